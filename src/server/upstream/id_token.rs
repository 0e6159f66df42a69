//! The upstream provider's ID token: its signature against the provider's JWK Set, its
//! claims against what this sign-in expects (OpenID Connect Core section 3.1.3.7), and
//! the mapping of its claims to the user (`OAuthUpstream.spec.claims`). Pure functions,
//! tested with tokens signed here.
//!
//! The checks are one function over the decoded claims ([`check`]) rather than
//! jsonwebtoken's `Validation`, so every rule is written down in one place and each is a
//! unit test: `iss` equal to the configured issuer, `aud` containing our client id,
//! `azp` (when present, and required with several audiences) equal to it, `exp` in the
//! future and `iat` not in it (with [`LEEWAY`] for clock skew), and `nonce` equal, in
//! constant time, to the one sent.

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::api::ClaimMapping;
use crate::auth::jws::{self, JwsError};

/// Clock skew tolerated between us and the provider, in seconds.
pub const LEEWAY: i64 = 60;
/// The most groups a user may bring (after the client's `allowedGroups`): they travel
/// in the code, which travels in a URL. `OAuthUser` has the same bound.
pub const MAX_GROUPS: usize = 64;
/// The longest claim value kept (a username, name, email or group).
const MAX_CLAIM: usize = 256;

/// Why an ID token is refused. None carries the token or a claim value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a well-formed JWT")]
    Malformed,
    #[error("the ID token's key is not in the provider's JWK Set")]
    UnknownKey,
    #[error("the ID token's algorithm is not accepted")]
    Algorithm,
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token was issued by another issuer")]
    Issuer,
    #[error("the ID token is for another audience")]
    Audience,
    #[error("the ID token's authorized party is another client")]
    AuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued in the future")]
    IssuedInFuture,
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
    #[error("the ID token has no subject")]
    Subject,
    #[error("the provider sent more than {MAX_GROUPS} groups")]
    TooManyGroups,
}

impl IdTokenError {
    /// A bounded label for audit logs.
    pub fn reason(&self) -> &'static str {
        match self {
            IdTokenError::Malformed => "id_token_malformed",
            IdTokenError::UnknownKey => "id_token_unknown_key",
            IdTokenError::Algorithm => "id_token_algorithm",
            IdTokenError::Signature => "id_token_signature",
            IdTokenError::Issuer => "id_token_issuer",
            IdTokenError::Audience => "id_token_audience",
            IdTokenError::AuthorizedParty => "id_token_azp",
            IdTokenError::Expired => "id_token_expired",
            IdTokenError::IssuedInFuture => "id_token_iat",
            IdTokenError::Nonce => "id_token_nonce",
            IdTokenError::Subject => "id_token_sub",
            IdTokenError::TooManyGroups => "too_many_groups",
        }
    }
}

/// The claims of `jwt` if it is signed by a key of `jwks` (see [`jws::verify`]). No claim
/// is checked here: that is [`check`].
pub fn verify_signature(jwt: &str, jwks: &JwkSet) -> Result<Map<String, Value>, IdTokenError> {
    jws::verify(jwt, jwks).map_err(|e| match e {
        JwsError::Malformed => IdTokenError::Malformed,
        JwsError::UnknownKey => IdTokenError::UnknownKey,
        JwsError::Algorithm => IdTokenError::Algorithm,
        JwsError::Signature => IdTokenError::Signature,
    })
}

/// What this sign-in expects of the ID token.
pub struct Expected<'a> {
    /// The configured issuer, compared byte for byte.
    pub issuer: &'a str,
    /// Our client id at the provider.
    pub client_id: &'a str,
    /// The nonce this sign-in sent.
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: i64,
}

/// Checks the claims of a verified ID token against `expected`; the subject on success.
pub fn check(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<String, IdTokenError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(expected.issuer) {
        return Err(IdTokenError::Issuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(all)) => all.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&expected.client_id) {
        return Err(IdTokenError::Audience);
    }
    match text("azp") {
        Some(azp) if azp != expected.client_id => return Err(IdTokenError::AuthorizedParty),
        None if audiences.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    if number("exp").is_none_or(|exp| exp + LEEWAY <= expected.now) {
        return Err(IdTokenError::Expired);
    }
    if number("iat").is_none_or(|iat| iat > expected.now + LEEWAY) {
        return Err(IdTokenError::IssuedInFuture);
    }
    let nonce_matches =
        text("nonce").is_some_and(|n| bool::from(n.as_bytes().ct_eq(expected.nonce.as_bytes())));
    if !nonce_matches {
        return Err(IdTokenError::Nonce);
    }
    match text("sub") {
        Some(sub) if !sub.is_empty() && sub.len() <= 255 => Ok(sub.to_string()),
        _ => Err(IdTokenError::Subject),
    }
}

/// The user as the provider describes them, through the claim mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

/// Reads the user's claims by `mapping`. The username falls back to the subject when the
/// provider sends none; an email the provider says is unverified is dropped; groups may
/// be a list or one string, and values too long to be names are dropped.
pub fn profile(claims: &Map<String, Value>, mapping: &ClaimMapping, subject: &str) -> Profile {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_CLAIM)
            .map(str::to_string)
    };
    let unverified = claims.get("email_verified") == Some(&Value::Bool(false));
    let mut groups: Vec<String> = match claims.get(&mapping.groups) {
        Some(Value::String(g)) => vec![g.clone()],
        Some(Value::Array(all)) => all
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    };
    groups.retain(|g| !g.is_empty() && g.len() <= MAX_CLAIM);
    let mut seen = std::collections::HashSet::new();
    groups.retain(|g| seen.insert(g.clone()));
    Profile {
        username: text(&mapping.username).unwrap_or_else(|| subject.to_string()),
        name: text(&mapping.name),
        email: text(&mapping.email).filter(|_| !unverified),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{KeySet, StoredKeys};
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://id.corp.test",
            client_id: "downstream",
            nonce: "n-1",
            now: NOW,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": "https://id.corp.test", "aud": "downstream", "sub": "u-1",
            "exp": NOW + 300, "iat": NOW, "nonce": "n-1"
        });
        if let (Some(b), Value::Object(extra)) = (base.as_object_mut(), v) {
            b.extend(extra);
        }
        match base {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn good_claims_give_the_subject() {
        assert_eq!(check(&claims(json!({})), &expected()), Ok("u-1".into()));
        let several = claims(json!({"aud": ["other", "downstream"], "azp": "downstream"}));
        assert_eq!(check(&several, &expected()), Ok("u-1".into()));
    }

    #[test]
    fn each_claim_is_checked() {
        let cases = [
            (json!({"iss": "https://evil.test"}), IdTokenError::Issuer),
            (
                json!({"iss": "https://id.corp.test/"}),
                IdTokenError::Issuer,
            ),
            (json!({"aud": "another-client"}), IdTokenError::Audience),
            (json!({"aud": ["a", "b"]}), IdTokenError::Audience),
            (json!({"aud": null}), IdTokenError::Audience),
            (
                json!({"azp": "another-client"}),
                IdTokenError::AuthorizedParty,
            ),
            (
                json!({"aud": ["downstream", "b"]}),
                IdTokenError::AuthorizedParty,
            ),
            (json!({"exp": NOW - LEEWAY}), IdTokenError::Expired),
            (json!({"exp": "soon"}), IdTokenError::Expired),
            (
                json!({"iat": NOW + LEEWAY + 1}),
                IdTokenError::IssuedInFuture,
            ),
            (json!({"nonce": "n-2"}), IdTokenError::Nonce),
            (json!({"nonce": null}), IdTokenError::Nonce),
            (json!({"sub": ""}), IdTokenError::Subject),
        ];
        for (change, want) in cases {
            assert_eq!(
                check(&claims(change.clone()), &expected()),
                Err(want),
                "{change}"
            );
        }
        let mut no_sub = claims(json!({}));
        no_sub.remove("sub");
        assert_eq!(check(&no_sub, &expected()), Err(IdTokenError::Subject));
    }

    #[test]
    fn the_mapping_picks_claims_with_fallbacks() {
        let c = claims(json!({
            "preferred_username": "alice", "name": "Alice", "email": "a@corp.test",
            "groups": ["billing", "ops", "billing", ""]
        }));
        let p = profile(&c, &ClaimMapping::default(), "u-1");
        assert_eq!(p.username, "alice");
        assert_eq!(p.name.as_deref(), Some("Alice"));
        assert_eq!(p.email.as_deref(), Some("a@corp.test"));
        assert_eq!(p.groups, ["billing", "ops"]);

        let mapping = ClaimMapping {
            username: "email".into(),
            groups: "roles".into(),
            ..ClaimMapping::default()
        };
        let c = claims(json!({"email": "b@corp.test", "email_verified": false, "roles": "admin"}));
        let p = profile(&c, &mapping, "u-1");
        assert_eq!(p.username, "b@corp.test", "the username may be any claim");
        assert_eq!(p.email, None, "an unverified email is dropped");
        assert_eq!(p.groups, ["admin"]);

        let p = profile(&claims(json!({})), &ClaimMapping::default(), "u-1");
        assert_eq!(p.username, "u-1", "no username: the subject");
        assert!(p.groups.is_empty());
    }

    fn signed(keys: &KeySet, claims: &Map<String, Value>) -> String {
        let signer = keys.signer(NOW);
        let mut header = jsonwebtoken::Header::new(signer.alg);
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &signer.key).expect("sign")
    }

    fn keys() -> KeySet {
        KeySet::load(&StoredKeys::generate_es256().expect("gen")).expect("load")
    }

    #[test]
    fn the_signature_must_be_by_a_key_of_the_jwks() {
        let provider = keys();
        let c = claims(json!({}));
        let good = signed(&provider, &c);
        assert_eq!(verify_signature(&good, &provider.jwks).as_ref(), Ok(&c));

        // Signed by a key the provider does not publish, under a kid it does not know.
        let forger = keys();
        let forged = signed(&forger, &c);
        assert_eq!(
            verify_signature(&forged, &provider.jwks),
            Err(IdTokenError::UnknownKey)
        );
        // ... or claiming the provider's kid.
        let kid = provider.signer(NOW).kid.clone();
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(kid);
        let impostor = jsonwebtoken::encode(&header, &c, &forger.signer(NOW).key).expect("sign");
        assert_eq!(
            verify_signature(&impostor, &provider.jwks),
            Err(IdTokenError::Signature)
        );
        // A changed claim breaks the signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut changed = c.clone();
        changed.insert("sub".into(), json!("admin"));
        parts[1] = b64.encode(serde_json::to_vec(&changed).expect("json"));
        assert_eq!(
            verify_signature(&parts.join("."), &provider.jwks),
            Err(IdTokenError::Signature)
        );
        assert_eq!(
            verify_signature("not.a.jwt", &provider.jwks),
            Err(IdTokenError::Malformed)
        );
    }

    #[test]
    fn symmetric_and_unsigned_tokens_are_refused() {
        let provider = keys();
        let c = claims(json!({}));
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(b"known"),
        )
        .expect("sign");
        assert_eq!(
            verify_signature(&hs, &provider.jwks),
            Err(IdTokenError::Algorithm)
        );
        let b64 = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(v).expect("json"))
        };
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&Value::Object(c))
        );
        assert!(verify_signature(&none, &provider.jwks).is_err());
    }

    #[test]
    fn a_forged_token_for_another_audience_fails_one_check_or_the_other() {
        // What the callback does: signature first, then the claims.
        let provider = keys();
        let other_audience = signed(&provider, &claims(json!({"aud": "someone-else"})));
        let verified = verify_signature(&other_audience, &provider.jwks).expect("genuine");
        assert_eq!(check(&verified, &expected()), Err(IdTokenError::Audience));
    }
}
