//! JWT access tokens (RFC 9068) and OpenID Connect ID tokens.

use jsonwebtoken::{Header, encode};
use serde::{Deserialize, Serialize};

use super::keys::SigningKey;

/// The claims of an access token, per RFC 9068 section 2.2.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// For the client-credentials grant the subject is the client itself.
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client's roles: the operator's default role first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The UID of the `OAuthClient` the token was issued to. A client deleted and created
    /// again under the same `clientId` is another client: introspection tells the two
    /// apart by this, so deleting a client ends its tokens even if GitOps re-applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uid: Option<String>,
    /// For a token issued to a user: the authorization grant it came from (an
    /// `OAuthGrant`), so that revoking the grant (a code used twice) ends the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// For a token issued to a user: when they signed in (RFC 9068 section 2.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// For a user who signed in through an upstream provider: who they are, since they are
    /// in no index (a private claim; see `server::upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamUser>,
    /// How the client authenticated for a client-credentials token, by its RFC 7591 name
    /// (`client_secret_basic`, `client_secret_post`, `private_key_jwt`), so a resource
    /// server can require clients without a secret (a private claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth_method: Option<String>,
}

/// A user of an upstream provider, as their code and tokens carry them: the provider
/// (its `OAuthUpstream`'s name and UID, so deleting it ends the tokens) and the claims
/// mapped at sign-in, the groups already filtered by the client's `allowedGroups`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, schemars::JsonSchema)]
pub struct UpstreamUser {
    /// The `OAuthUpstream`'s name.
    pub upstream: String,
    /// The `OAuthUpstream`'s UID.
    pub upstream_uid: String,
    /// The mapped username.
    pub username: String,
    /// The mapped full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The mapped email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The mapped groups the client may see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The claims of an ID token (OpenID Connect Core section 2), with the standard claims
/// the granted scopes ask for (section 5.4).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client id alone.
    pub aud: String,
    pub azp: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// `profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `groups`: the user's groups the client may see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// The sign-in session (OpenID Connect Front-Channel Logout's `sid`), which an
    /// `id_token_hint` at logout ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("signing an access token failed: {0}")]
pub struct SignError(#[from] jsonwebtoken::errors::Error);

/// Signs `claims` with `key`, typed `at+jwt` (RFC 9068 section 2.1) and carrying the `kid`
/// so that verifiers pick the right key from the JWK Set.
pub fn sign(claims: &AccessTokenClaims, key: &SigningKey) -> Result<String, SignError> {
    let mut header = Header::new(key.alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    Ok(encode(&header, claims, &key.key)?)
}

/// Signs an ID token, typed `JWT` as OpenID Connect has it.
pub fn sign_id_token(claims: &IdTokenClaims, key: &SigningKey) -> Result<String, SignError> {
    let mut header = Header::new(key.alg);
    header.typ = Some("JWT".into());
    header.kid = Some(key.kid.clone());
    Ok(encode(&header, claims, &key.key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{KeySet, StoredKeys};
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    #[test]
    fn signed_tokens_verify_with_the_published_key() {
        let keys = KeySet::load(&StoredKeys::generate_es256().expect("gen")).expect("load");
        let claims = AccessTokenClaims {
            iss: "https://issuer".into(),
            sub: "c1".into(),
            aud: vec!["api".into()],
            exp: jiff::Timestamp::now().as_second() + 60,
            iat: jiff::Timestamp::now().as_second(),
            jti: "j".into(),
            client_id: "c1".into(),
            scope: Some("read".into()),
            roles: vec!["member".into()],
            client_uid: Some("uid".into()),
            grant_id: None,
            auth_time: None,
            upstream: None,
            client_auth_method: None,
        };
        let signer = keys.signer(claims.iat);
        let jwt = sign(&claims, signer).expect("sign");
        let header = decode_header(&jwt).expect("header");
        assert_eq!(header.kid.as_deref(), Some(signer.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwk = keys.jwks.find(&signer.kid).expect("published");
        let mut v = Validation::new(signer.alg);
        v.set_audience(&["api"]);
        v.set_issuer(&["https://issuer"]);
        let got = decode::<AccessTokenClaims>(&jwt, &DecodingKey::from_jwk(jwk).expect("jwk"), &v)
            .expect("verifies");
        assert_eq!(got.claims, claims);
    }
}
