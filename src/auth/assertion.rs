//! Client assertions (RFC 7521, RFC 7523 section 2.2; `private_key_jwt` in OpenID Connect
//! Core section 9): a client proves who it is with a short-lived JWT signed by a key it
//! holds, and the server holds only the public half. Pure functions, tested with
//! assertions signed here; the replay memory is [`Replays`].
//!
//! The rules, each a test below:
//! - the signature by a key of the client's JWK Set, with an asymmetric algorithm
//!   ([`super::jws`]);
//! - `iss` and `sub` both the client id;
//! - `aud` naming the token endpoint or the issuer (RFC 7523 section 3 allows either);
//! - `exp` required, not past, and at most [`MAX_LIFETIME`] ahead: a long-lived assertion
//!   is a bearer secret by another name;
//! - `nbf` and `iat`, when present, not in the future (both with [`LEEWAY`]);
//! - `jti` required, used once ([`Replays`]).
//!
//! The client's JWK Set is checked once, when the controller reads it ([`ClientKeys`]):
//! public keys only (a JWK with private members means the private key was shared and is
//! refused, not just stripped), signature keys of a type and algorithm this server
//! verifies, at most [`MAX_KEYS`] of them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jws::{self, JwsError};
use crate::api::FederatedSubject;

/// How a client that presented a ServiceAccount token authenticated, in its status and in
/// its tokens' `client_auth_method` claim. Not an RFC 7591 name: none exists for it (on
/// the wire it is a `jwt-bearer` client assertion, like `private_key_jwt`).
pub const SERVICE_ACCOUNT_METHOD: &str = "kubernetes_service_account";
/// How a client that presented a token of a federated issuer authenticated (as
/// [`SERVICE_ACCOUNT_METHOD`], no RFC 7591 name exists for it).
pub const FEDERATED_METHOD: &str = "federated_identity";
/// The `sub` prefix of a Kubernetes ServiceAccount token.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// `client_assertion_type` of a JWT assertion (RFC 7523 section 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may be valid for, from now, in seconds.
pub const MAX_LIFETIME: i64 = 300;
/// Clock skew tolerated between a client and us, in seconds.
pub const LEEWAY: i64 = 30;
/// The most keys a client's JWK Set may hold (a current and a next key, with room for
/// several workloads).
pub const MAX_KEYS: usize = 16;
/// The longest `jti` remembered; longer ones are refused.
const MAX_JTI: usize = 256;

/// Why a client's JWK Set is refused. Its message names what to fix, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("is not a JWK Set (a JSON object with a \"keys\" array of JWKs)")]
    NotJwks,
    #[error("has no key")]
    Empty,
    #[error("has more than {MAX_KEYS} keys")]
    TooMany,
    #[error(
        "key {0} holds private key material: publish only the public key, and replace the private one, which has been shared"
    )]
    Private(usize),
    #[error("key {0} is symmetric (kty oct): client assertions are verified with public keys")]
    Symmetric(usize),
    #[error("key {0} is for encryption (use enc), not for signatures")]
    Encryption(usize),
    #[error("key {0} names an algorithm this server does not verify")]
    Algorithm(usize),
    #[error("keys {0} and {1} have the same kid")]
    DuplicateKid(usize, usize),
}

/// A client's public keys, checked (see the module documentation).
#[derive(Debug, Clone)]
pub struct ClientKeys {
    pub jwks: JwkSet,
    /// The set as the controller wrote it: what two `ClientKeys` are compared by.
    pub text: String,
}

impl PartialEq for ClientKeys {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl ClientKeys {
    /// Parses and checks a JWK Set; `text` is kept as given.
    pub fn parse(text: &str) -> Result<Self, JwksError> {
        let raw: Value = serde_json::from_str(text).map_err(|_| JwksError::NotJwks)?;
        let keys = raw
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotJwks)?;
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        if keys.len() > MAX_KEYS {
            return Err(JwksError::TooMany);
        }
        // Private members of RSA (d, p, q, dp, dq, qi, oth), EC and OKP (d) keys, and the
        // symmetric key of an oct one (k).
        const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];
        for (i, k) in keys.iter().enumerate() {
            let Some(k) = k.as_object() else {
                return Err(JwksError::NotJwks);
            };
            if k.get("kty").and_then(Value::as_str) == Some("oct") || k.contains_key("k") {
                return Err(JwksError::Symmetric(i));
            }
            if PRIVATE.iter().any(|m| k.contains_key(*m)) {
                return Err(JwksError::Private(i));
            }
        }
        let jwks: JwkSet = serde_json::from_value(raw).map_err(|_| JwksError::NotJwks)?;
        for (i, jwk) in jwks.keys.iter().enumerate() {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return Err(JwksError::Encryption(i));
            }
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return Err(JwksError::Symmetric(i));
            }
            if let Some(alg) = jwk.common.key_algorithm
                && !signs_with(alg)
            {
                return Err(JwksError::Algorithm(i));
            }
            if jsonwebtoken::DecodingKey::from_jwk(jwk).is_err() {
                return Err(JwksError::NotJwks);
            }
            if let Some(kid) = &jwk.common.key_id
                && let Some(j) = jwks.keys[..i]
                    .iter()
                    .position(|o| o.common.key_id.as_ref() == Some(kid))
            {
                return Err(JwksError::DuplicateKid(j, i));
            }
        }
        Ok(ClientKeys {
            jwks,
            text: text.to_string(),
        })
    }
}

fn signs_with(alg: KeyAlgorithm) -> bool {
    jws::ALGORITHMS
        .iter()
        .any(|a| format!("{a:?}") == alg.to_string())
}

/// Why an assertion is refused: each is `invalid_client` to the client, and these labels
/// tell the audit log and the metrics which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the assertion is not a well-formed JWT")]
    Malformed,
    #[error("the assertion's key is not one of the client's")]
    UnknownKey,
    #[error("the assertion's algorithm is not accepted")]
    Algorithm,
    #[error("the assertion's signature does not verify")]
    Signature,
    #[error("the assertion's iss or sub is not the client id")]
    Issuer,
    #[error("the assertion is for another audience")]
    Audience,
    #[error("the assertion has expired")]
    Expired,
    #[error("the assertion is valid for longer than {MAX_LIFETIME} s")]
    TooLong,
    #[error("the assertion is not valid yet")]
    NotYetValid,
    #[error("the assertion has no usable jti")]
    NoJti,
    #[error("the assertion was used before")]
    Replayed,
    #[error("the client accepts no assertion of this kind")]
    NotAccepted,
    #[error("no active client has this id")]
    UnknownClient,
    #[error("the assertion's ServiceAccount does not exist now with the UID it names")]
    ServiceAccountGone,
    #[error("the ServiceAccount issuer's keys could not be read")]
    IssuerUnavailable,
}

impl AssertionError {
    /// A bounded label for audit logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            AssertionError::Malformed => "assertion_malformed",
            AssertionError::UnknownKey => "assertion_unknown_key",
            AssertionError::Algorithm => "assertion_algorithm",
            AssertionError::Signature => "assertion_signature",
            AssertionError::Issuer => "assertion_issuer",
            AssertionError::Audience => "assertion_audience",
            AssertionError::Expired => "assertion_expired",
            AssertionError::TooLong => "assertion_too_long",
            AssertionError::NotYetValid => "assertion_not_yet_valid",
            AssertionError::NoJti => "assertion_no_jti",
            AssertionError::Replayed => "assertion_replayed",
            AssertionError::NotAccepted => "assertion_not_accepted",
            AssertionError::UnknownClient => "assertion_unknown_client",
            AssertionError::ServiceAccountGone => "assertion_service_account_gone",
            AssertionError::IssuerUnavailable => "assertion_issuer_unavailable",
        }
    }
}

impl From<JwsError> for AssertionError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Malformed => AssertionError::Malformed,
            JwsError::UnknownKey => AssertionError::UnknownKey,
            JwsError::Algorithm => AssertionError::Algorithm,
            JwsError::Signature => AssertionError::Signature,
        }
    }
}

/// What the server expects of a client's assertion.
pub struct Expected<'a> {
    pub client_id: &'a str,
    /// Audiences that name this server: its token endpoint and its issuer.
    pub audiences: [&'a str; 2],
    /// Unix seconds.
    pub now: i64,
}

/// An assertion that passed every check but the replay one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub jti: String,
    /// Unix seconds: until when its `jti` must be remembered.
    pub exp: i64,
}

/// Verifies a `private_key_jwt` assertion of `expected.client_id` against its keys.
pub fn check_private_key_jwt(
    jwt: &str,
    keys: &ClientKeys,
    expected: &Expected<'_>,
) -> Result<Checked, AssertionError> {
    let claims = jws::verify(jwt, &keys.jwks)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(expected.client_id) || text("sub") != Some(expected.client_id) {
        return Err(AssertionError::Issuer);
    }
    check_time_and_audience(&claims, &expected.audiences, expected.now)
}

/// `aud`, `exp` (at most [`MAX_LIFETIME`] ahead), `nbf`, `iat` and `jti`: the rules of a
/// `private_key_jwt` assertion beyond its signature and issuer.
pub fn check_time_and_audience(
    claims: &Map<String, Value>,
    audiences: &[&str],
    now: i64,
) -> Result<Checked, AssertionError> {
    let exp = check_validity(claims, audiences, now)?;
    if exp > now + MAX_LIFETIME + LEEWAY {
        return Err(AssertionError::TooLong);
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
        .ok_or(AssertionError::NoJti)?;
    Ok(Checked {
        jti: jti.to_string(),
        exp: exp + LEEWAY,
    })
}

/// `aud`, `exp`, `nbf` and `iat`, the rules every kind of assertion shares; the `exp`.
fn check_validity(
    claims: &Map<String, Value>,
    audiences: &[&str],
    now: i64,
) -> Result<i64, AssertionError> {
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(all)) => all
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.contains(&a)),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Audience);
    }
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let exp = number("exp").ok_or(AssertionError::Expired)?;
    if exp + LEEWAY <= now {
        return Err(AssertionError::Expired);
    }
    for name in ["nbf", "iat"] {
        match claims.get(name) {
            None => {}
            Some(v) => match v.as_i64() {
                Some(t) if t <= now + LEEWAY => {}
                _ => return Err(AssertionError::NotYetValid),
            },
        }
    }
    Ok(exp)
}

/// The ServiceAccount a token's `sub` names, `system:serviceaccount:<namespace>:<name>`,
/// read before any check (to find the client and the keys).
pub fn service_account_subject(sub: &str) -> Option<(&str, &str)> {
    let (namespace, name) = sub.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// A verified ServiceAccount token: whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountClaims {
    pub namespace: String,
    pub name: String,
    /// The UID of the ServiceAccount the token was issued for.
    pub uid: String,
}

/// What a ServiceAccount token must be: signed by a key of the cluster's issuer, of that
/// issuer, for `audience`.
pub struct ExpectedServiceAccount<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub now: i64,
}

/// Verifies a Kubernetes ServiceAccount token (a projected or TokenRequest token: the
/// legacy Secret-based tokens have no audience and no expiry, and are refused by the
/// `aud` and `exp` rules). Its lifetime is the kubelet's business (at least ten minutes,
/// refreshed before it ends), so it is not bounded by [`MAX_LIFETIME`], and the same token
/// is presented many times, so it has no single-use `jti`. Whether the ServiceAccount
/// still exists with this UID is the caller's check, against the index.
pub fn check_service_account_token(
    jwt: &str,
    issuer_keys: &JwkSet,
    expected: &ExpectedServiceAccount<'_>,
) -> Result<ServiceAccountClaims, AssertionError> {
    let claims = jws::verify(jwt, issuer_keys)?;
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(AssertionError::Issuer);
    }
    check_validity(&claims, &[expected.audience], expected.now)?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (namespace, name) = service_account_subject(sub).ok_or(AssertionError::Issuer)?;
    // The private claims must name the same ServiceAccount as `sub`, with its UID.
    let k8s = claims.get("kubernetes.io");
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(k8s?, |v, key| v.get(key))
            .and_then(Value::as_str)
    };
    if field(&["namespace"]) != Some(namespace) || field(&["serviceaccount", "name"]) != Some(name)
    {
        return Err(AssertionError::Issuer);
    }
    let uid = field(&["serviceaccount", "uid"])
        .filter(|u| !u.is_empty())
        .ok_or(AssertionError::ServiceAccountGone)?;
    Ok(ServiceAccountClaims {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
    })
}

/// Verifies a token of a federated issuer (another cluster's ServiceAccount token, a CI
/// system's OIDC token) for one of the client's `identities`: signed by a key of the
/// issuer, `iss` the issuer, `sub` one identity's subject, and `aud` that identity's
/// audience (`default_audience` when it names none), within its validity. As for
/// ServiceAccount tokens, the lifetime is the issuer's business and the token is presented
/// many times, so neither [`MAX_LIFETIME`] nor a `jti` applies; unlike them, nothing says
/// whether the workload still exists at the other end beyond the token's expiry.
pub fn check_federated_token(
    jwt: &str,
    issuer_keys: &JwkSet,
    issuer: &str,
    identities: &[FederatedSubject],
    default_audience: &str,
    now: i64,
) -> Result<(), AssertionError> {
    let claims = jws::verify(jwt, issuer_keys)?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(AssertionError::Issuer);
    }
    let sub = claims.get("sub").and_then(Value::as_str);
    let identity = identities
        .iter()
        .find(|i| i.issuer == issuer && Some(i.subject.as_str()) == sub)
        .ok_or(AssertionError::NotAccepted)?;
    let audience = identity.audience.as_deref().unwrap_or(default_audience);
    check_validity(&claims, &[audience], now).map(|_| ())
}

/// The `jti`s this replica has seen, each until its assertion expires: an assertion is
/// accepted once per replica. Holding it across replicas would take a write to the API
/// server per token; an assertion lives at most [`MAX_LIFETIME`] and travels only to the
/// token endpoint over TLS, so a replayed one could be used at most once more per replica
/// within those minutes (docs/token-server.md says so).
///
/// Bounded: entries are a 16-byte digest of the client id and the `jti` with the expiry;
/// when full, expired entries are dropped, and if none is, new assertions are refused
/// until some expire (only clients whose signature verified can fill it).
pub struct Replays {
    capacity: usize,
    seen: Mutex<HashMap<[u8; 16], i64>>,
}

/// What [`Replays::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    First,
    Replayed,
    /// No room: the assertion can be neither remembered nor accepted.
    Full,
}

impl Replays {
    pub fn new(capacity: usize) -> Self {
        Replays {
            capacity,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers `checked` for `client_id`, unless it was seen before.
    pub fn first_use(&self, client_id: &str, checked: &Checked, now: i64) -> Use {
        let mut digest = Sha256::new();
        digest.update(client_id.as_bytes());
        digest.update([0]);
        digest.update(checked.jti.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.finalize()[..16]);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(exp) = seen.get(&key)
            && *exp > now
        {
            return Use::Replayed;
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, exp| *exp > now);
            if seen.len() >= self.capacity {
                return Use::Full;
            }
        }
        seen.insert(key, checked.exp);
        Use::First
    }

    /// How many `jti`s are remembered.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{KeySet, StoredKeys};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ENDPOINT: &str = "https://id.example/token";
    const ISSUER: &str = "https://id.example";

    struct Holder {
        keys: ClientKeys,
        kid: String,
        private: EncodingKey,
    }

    /// A client's key pair: the public JWK Set it publishes and its private key.
    fn holder() -> Holder {
        let stored = StoredKeys::generate_es256().expect("generate");
        let set = KeySet::load(&stored).expect("load");
        let signer = set.signer(NOW);
        Holder {
            keys: ClientKeys::parse(&serde_json::to_string(&set.jwks).expect("json"))
                .expect("valid"),
            kid: signer.kid.clone(),
            private: signer.key.clone(),
        }
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({
            "iss": "billing", "sub": "billing", "aud": ENDPOINT,
            "exp": NOW + 60, "iat": NOW, "jti": "j-1"
        });
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn sign(h: &Holder, kid: &str, c: &Value) -> String {
        let kid = if kid.is_empty() { h.kid.as_str() } else { kid };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, c, &h.private).expect("sign")
    }

    fn expected() -> Expected<'static> {
        Expected {
            client_id: "billing",
            audiences: [ENDPOINT, ISSUER],
            now: NOW,
        }
    }

    #[test]
    fn a_fresh_assertion_by_the_clients_key_passes() {
        let h = holder();
        let checked =
            check_private_key_jwt(&sign(&h, "", &claims(json!({}))), &h.keys, &expected());
        assert_eq!(
            checked,
            Ok(Checked {
                jti: "j-1".into(),
                exp: NOW + 60 + LEEWAY
            })
        );
        let to_issuer = sign(&h, "", &claims(json!({"aud": [ISSUER, "other"]})));
        assert!(check_private_key_jwt(&to_issuer, &h.keys, &expected()).is_ok());
    }

    #[test]
    fn each_claim_rule_refuses_on_its_own() {
        let h = holder();
        let cases = [
            (json!({"iss": "other"}), AssertionError::Issuer),
            (json!({"sub": "other"}), AssertionError::Issuer),
            (json!({"sub": null}), AssertionError::Issuer),
            (
                json!({"aud": "https://elsewhere/token"}),
                AssertionError::Audience,
            ),
            (json!({"aud": null}), AssertionError::Audience),
            (json!({"exp": NOW - LEEWAY}), AssertionError::Expired),
            (json!({"exp": null}), AssertionError::Expired),
            (json!({"exp": NOW + 3600}), AssertionError::TooLong),
            (json!({"nbf": NOW + 120}), AssertionError::NotYetValid),
            (json!({"iat": NOW + 120}), AssertionError::NotYetValid),
            (json!({"jti": null}), AssertionError::NoJti),
            (json!({"jti": ""}), AssertionError::NoJti),
        ];
        for (change, err) in cases {
            let jwt = sign(&h, "", &claims(change.clone()));
            assert_eq!(
                check_private_key_jwt(&jwt, &h.keys, &expected()),
                Err(err),
                "{change}"
            );
        }
    }

    #[test]
    fn another_key_none_and_hmac_are_refused() {
        let h = holder();
        let other = holder();
        let c = claims(json!({}));
        assert_eq!(
            check_private_key_jwt(&sign(&other, &h.kid, &c), &h.keys, &expected()),
            Err(AssertionError::Signature)
        );
        assert_eq!(
            check_private_key_jwt(&sign(&h, "k2", &c), &h.keys, &expected()),
            Err(AssertionError::UnknownKey)
        );
        // HMAC keyed with the public JWK Set's text: what a confused verifier would accept.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(h.keys.text.as_bytes()),
        )
        .expect("sign");
        assert_eq!(
            check_private_key_jwt(&hs, &h.keys, &expected()),
            Err(AssertionError::Algorithm)
        );
        use base64::Engine;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&c));
        assert!(check_private_key_jwt(&none, &h.keys, &expected()).is_err());
    }

    const CLUSTER: &str = "https://kubernetes.default.svc";

    /// A token as the API server's TokenRequest makes it, bound to a Pod.
    fn sa_claims(extra: Value) -> Value {
        let mut c = json!({
            "iss": CLUSTER, "sub": "system:serviceaccount:payments:billing",
            "aud": [ISSUER], "exp": NOW + 3600, "iat": NOW, "nbf": NOW, "jti": "t-1",
            "kubernetes.io": {
                "namespace": "payments",
                "serviceaccount": {"name": "billing", "uid": "sa-uid-1"},
                "pod": {"name": "billing-0", "uid": "pod-uid-1"}
            }
        });
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    }

    fn expected_sa() -> ExpectedServiceAccount<'static> {
        ExpectedServiceAccount {
            issuer: CLUSTER,
            audience: ISSUER,
            now: NOW,
        }
    }

    #[test]
    fn a_service_account_token_names_its_account_and_uid() {
        let h = holder();
        let jwt = sign(&h, "", &sa_claims(json!({})));
        assert_eq!(
            check_service_account_token(&jwt, &h.keys.jwks, &expected_sa()),
            Ok(ServiceAccountClaims {
                namespace: "payments".into(),
                name: "billing".into(),
                uid: "sa-uid-1".into(),
            })
        );
        // Presented again: a ServiceAccount token is not single-use.
        assert!(check_service_account_token(&jwt, &h.keys.jwks, &expected_sa()).is_ok());
    }

    #[test]
    fn each_service_account_rule_refuses_on_its_own() {
        let h = holder();
        let other_ns = json!({"namespace": "other",
            "serviceaccount": {"name": "billing", "uid": "sa-uid-1"}});
        let no_uid = json!({"namespace": "payments", "serviceaccount": {"name": "billing"}});
        let cases = [
            (
                json!({"iss": "https://other.cluster"}),
                AssertionError::Issuer,
            ),
            (json!({"sub": "billing"}), AssertionError::Issuer),
            (json!({"kubernetes.io": other_ns}), AssertionError::Issuer),
            (
                json!({"kubernetes.io": no_uid}),
                AssertionError::ServiceAccountGone,
            ),
            (
                json!({"aud": ["https://kubernetes.default.svc"]}),
                AssertionError::Audience,
            ),
            (json!({"exp": NOW - LEEWAY}), AssertionError::Expired),
            (json!({"exp": null}), AssertionError::Expired),
            (json!({"nbf": NOW + 120}), AssertionError::NotYetValid),
        ];
        for (change, err) in cases {
            let jwt = sign(&h, "", &sa_claims(change.clone()));
            assert_eq!(
                check_service_account_token(&jwt, &h.keys.jwks, &expected_sa()),
                Err(err),
                "{change}"
            );
        }
        let other = holder();
        let forged = sign(&other, &h.kid, &sa_claims(json!({})));
        assert_eq!(
            check_service_account_token(&forged, &h.keys.jwks, &expected_sa()),
            Err(AssertionError::Signature)
        );
    }

    const OTHER_CLUSTER: &str = "https://oidc.other-cluster.test";

    fn identities() -> Vec<FederatedSubject> {
        vec![
            FederatedSubject {
                issuer: OTHER_CLUSTER.into(),
                subject: "system:serviceaccount:payments:billing".into(),
                audience: None,
            },
            FederatedSubject {
                issuer: OTHER_CLUSTER.into(),
                subject: "ci:deploy".into(),
                audience: Some("https://ci-audience.test".into()),
            },
        ]
    }

    fn check_federated(jwt: &str, keys: &JwkSet) -> Result<(), AssertionError> {
        check_federated_token(jwt, keys, OTHER_CLUSTER, &identities(), ISSUER, NOW)
    }

    #[test]
    fn a_federated_token_of_a_listed_subject_passes_for_its_audience() {
        let h = holder();
        let token = sign(&h, "", &sa_claims(json!({"iss": OTHER_CLUSTER})));
        assert_eq!(check_federated(&token, &h.keys.jwks), Ok(()));
        // Presented again: not single-use.
        assert_eq!(check_federated(&token, &h.keys.jwks), Ok(()));
        let ci =
            json!({"iss": OTHER_CLUSTER, "sub": "ci:deploy", "aud": "https://ci-audience.test"});
        assert_eq!(
            check_federated(&sign(&h, "", &sa_claims(ci)), &h.keys.jwks),
            Ok(())
        );
    }

    #[test]
    fn each_federated_rule_refuses_on_its_own() {
        let h = holder();
        let cases = [
            (json!({}), AssertionError::Issuer),
            (
                json!({"iss": OTHER_CLUSTER, "sub": "system:serviceaccount:payments:other"}),
                AssertionError::NotAccepted,
            ),
            // Each identity's own audience: ci:deploy's is not our issuer.
            (
                json!({"iss": OTHER_CLUSTER, "sub": "ci:deploy"}),
                AssertionError::Audience,
            ),
            (
                json!({"iss": OTHER_CLUSTER, "aud": "https://ci-audience.test"}),
                AssertionError::Audience,
            ),
            (
                json!({"iss": OTHER_CLUSTER, "exp": NOW - LEEWAY}),
                AssertionError::Expired,
            ),
            (
                json!({"iss": OTHER_CLUSTER, "iat": NOW + 120}),
                AssertionError::NotYetValid,
            ),
        ];
        for (change, err) in cases {
            let token = sign(&h, "", &sa_claims(change.clone()));
            assert_eq!(check_federated(&token, &h.keys.jwks), Err(err), "{change}");
        }
        let forged = sign(&holder(), &h.kid, &sa_claims(json!({"iss": OTHER_CLUSTER})));
        assert_eq!(
            check_federated(&forged, &h.keys.jwks),
            Err(AssertionError::Signature)
        );
        // An identity of another issuer does not match, whatever the token says.
        let token = sign(&h, "", &sa_claims(json!({"iss": CLUSTER})));
        assert_eq!(
            check_federated_token(&token, &h.keys.jwks, CLUSTER, &identities(), ISSUER, NOW),
            Err(AssertionError::NotAccepted)
        );
    }

    #[test]
    fn a_service_account_subject_has_a_namespace_and_a_name() {
        assert_eq!(
            service_account_subject("system:serviceaccount:payments:billing"),
            Some(("payments", "billing"))
        );
        for sub in [
            "billing",
            "system:serviceaccount:payments",
            "system:serviceaccount::billing",
            "system:serviceaccount:payments:",
            "system:serviceaccount:a:b:c",
        ] {
            assert_eq!(service_account_subject(sub), None, "{sub}");
        }
    }

    #[test]
    fn a_jti_is_accepted_once_until_it_expires() {
        let replays = Replays::new(2);
        let a = Checked {
            jti: "a".into(),
            exp: NOW + 10,
        };
        assert_eq!(replays.first_use("c", &a, NOW), Use::First);
        assert_eq!(replays.first_use("c", &a, NOW), Use::Replayed);
        assert_eq!(replays.first_use("d", &a, NOW), Use::First, "per client");
        let b = Checked {
            jti: "b".into(),
            exp: NOW + 10,
        };
        assert_eq!(replays.first_use("c", &b, NOW), Use::Full, "bounded");
        // Once the first two expired they make room.
        assert_eq!(replays.first_use("c", &b, NOW + 11), Use::First);
        assert_eq!(replays.len(), 1);
    }

    #[test]
    fn a_jwks_with_private_or_symmetric_keys_is_refused() {
        let h = holder();
        let mut v: Value = serde_json::from_str(&h.keys.text).expect("json");
        v["keys"][0]["d"] = json!("c2VjcmV0");
        assert_eq!(
            ClientKeys::parse(&v.to_string()),
            Err(JwksError::Private(0))
        );
        let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert_eq!(
            ClientKeys::parse(&oct.to_string()),
            Err(JwksError::Symmetric(0))
        );
        assert_eq!(ClientKeys::parse("{}"), Err(JwksError::NotJwks));
        assert_eq!(ClientKeys::parse(r#"{"keys":[]}"#), Err(JwksError::Empty));
        let mut enc: Value = serde_json::from_str(&h.keys.text).expect("json");
        enc["keys"][0]["use"] = json!("enc");
        assert_eq!(
            ClientKeys::parse(&enc.to_string()),
            Err(JwksError::Encryption(0))
        );
        let mut two: Value = serde_json::from_str(&h.keys.text).expect("json");
        let first = two["keys"][0].clone();
        two["keys"].as_array_mut().expect("keys").push(first);
        assert_eq!(
            ClientKeys::parse(&two.to_string()),
            Err(JwksError::DuplicateKid(0, 1))
        );
    }
}
