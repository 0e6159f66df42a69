//! The objects a registration creates, built as plain values: the `OAuthClient` (an
//! ordinary one, labelled with its initial access token, so `kubectl` and GitOps tools see
//! it) and the Secret holding its hashes, owned by the client so that both go together.
//! Also the way back: the RFC 7592 client information read from a stored client. Pure: no
//! HTTP, no API calls; [`super::handlers`] sends what these return.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::ResourceExt;
use kube::api::ObjectMeta;
use serde::Serialize;

use super::metadata::{Accepted, AuthMethod};
use super::{
    ACCESS_TOKEN_HASH_KEY, AUTH_METHOD_ANNOTATION, JWKS_KEY, SECRET_ENTRY, SECRET_HASH_KEY,
};
use crate::api::{
    Authentication, ClientSecret, ClientType, InitialAccessToken, MANAGED_BY, MANAGED_BY_LABEL,
    OAuthClient, OAuthClientSpec, PrivateKeyJwt, REGISTERED_BY_LABEL, Registration,
    RegistrationPolicy, SecretKeyRef,
};
use crate::auth::secret::SecretString;

/// RFC 7591 section 3.2.1 / RFC 7592 section 3 response.
#[derive(Serialize)]
pub(super) struct ClientInformation {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub grant_types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: &'static str,
    /// A `private_key_jwt` client's keys, as registered (on the first answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Where a `private_key_jwt` client publishes its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    pub registration_client_uri: String,
}

/// The name of the Secret holding a registered client's hashes.
pub(super) fn registration_secret_name(client_id: &str) -> String {
    format!("{client_id}-registration")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OAuthClient of a registration under `iat`, in its namespace. A confidential client
/// gets one secret entry whose hash lives in the registration Secret.
pub(super) fn build_client(
    iat: &InitialAccessToken,
    accepted: &Accepted,
    client_id: &str,
    policy: &RegistrationPolicy,
    secret_expires: Timestamp,
) -> OAuthClient {
    let secret_name = registration_secret_name(client_id);
    let public = accepted.auth_method == AuthMethod::None;
    let by_key = accepted.auth_method == AuthMethod::PrivateKeyJwt;
    let secrets = if public || by_key {
        Vec::new()
    } else {
        vec![ClientSecret {
            name: SECRET_ENTRY.into(),
            description: Some("Issued at registration (RFC 7591)".into()),
            expires_after: None,
            expires_at: Some(Time(secret_expires)),
            never_expires: None,
            secret_key_ref: None,
            hash_ref: Some(SecretKeyRef {
                name: secret_name.clone(),
                key: SECRET_HASH_KEY.into(),
            }),
        }]
    };
    let mut client = OAuthClient::new(
        client_id,
        OAuthClientSpec {
            display_name: accepted.name.clone(),
            description: None,
            version: None,
            client_id: Some(client_id.to_string()),
            client_type: if public {
                ClientType::Public
            } else {
                ClientType::Confidential
            },
            active: true,
            grant_types: accepted.grant_types.clone(),
            redirect_uris: accepted.redirect_uris.clone(),
            post_logout_redirect_uris: Vec::new(),
            scopes: accepted.scopes.clone(),
            audiences: policy.audiences.clone(),
            roles: Vec::new(),
            allowed_groups: None,
            refresh_count: None,
            refresh_token_idle_lifetime: None,
            refresh_token_max_lifetime: None,
            access_token_lifetime_seconds: policy.max_access_token_lifetime_seconds.unwrap_or(3600),
            secrets,
            authentication: by_key.then(|| Authentication {
                private_key_jwt: Some(PrivateKeyJwt {
                    jwks_secret_ref: accepted.jwks.is_some().then(|| SecretKeyRef {
                        name: secret_name.clone(),
                        key: JWKS_KEY.into(),
                    }),
                    jwks_uri: accepted.jwks_uri.clone(),
                }),
                service_accounts: Vec::new(),
                federated: Vec::new(),
            }),
            credentials_secret: None,
            registration: Some(Registration {
                initial_access_token: iat.name_any(),
                access_token_hash_ref: SecretKeyRef {
                    name: secret_name,
                    key: ACCESS_TOKEN_HASH_KEY.into(),
                },
            }),
        },
    );
    client.metadata.namespace = iat.namespace();
    client.metadata.labels = Some(BTreeMap::from([(
        REGISTERED_BY_LABEL.to_string(),
        iat.name_any(),
    )]));
    client.metadata.annotations = Some(BTreeMap::from([(
        AUTH_METHOD_ANNOTATION.to_string(),
        accepted.auth_method.as_str().to_string(),
    )]));
    client
}

/// What goes into a registration Secret besides its hashes.
pub(super) struct RegistrationSecret<'a> {
    pub namespace: &'a str,
    /// The InitialAccessToken's name, for the label.
    pub initial_access_token: &'a str,
    pub client_id: &'a str,
    pub access_token_hash: String,
    /// `None` for a public client.
    pub secret_hash: Option<String>,
    /// The plaintext secret, written only when the token's policy asks for it
    /// (`writeSecret`), for workloads in the namespace to mount.
    pub plaintext_secret: Option<&'a SecretString>,
    /// A `private_key_jwt` client's public keys.
    pub jwks: Option<String>,
    pub write_secret: bool,
    /// The created OAuthClient, so the Secret goes when the client does.
    pub owner: Option<OwnerReference>,
}

/// The Secret of a registered client: its hashes, which the controller reads like any
/// other client's, and the plaintext credentials only with `writeSecret`.
pub(super) fn registration_secret(s: RegistrationSecret<'_>) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(ACCESS_TOKEN_HASH_KEY.to_string(), s.access_token_hash);
    if let Some(h) = s.secret_hash {
        data.insert(SECRET_HASH_KEY.to_string(), h);
    }
    if let Some(jwks) = s.jwks {
        data.insert(JWKS_KEY.to_string(), jwks);
    }
    if s.write_secret {
        data.insert("client_id".into(), s.client_id.to_string());
        if let Some(secret) = s.plaintext_secret {
            data.insert("client_secret".into(), secret.expose().to_string());
        }
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(registration_secret_name(s.client_id)),
            namespace: Some(s.namespace.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (
                    REGISTERED_BY_LABEL.to_string(),
                    s.initial_access_token.to_string(),
                ),
            ])),
            owner_references: s.owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// RFC 7592 client information, without the secret and the access token (only hashes
/// are kept).
pub(super) fn information(client: &OAuthClient, issuer: &str) -> ClientInformation {
    let client_id = client.effective_client_id().unwrap_or_default();
    let auth_method = client
        .annotations()
        .get(AUTH_METHOD_ANNOTATION)
        .and_then(|m| AuthMethod::parse(Some(m)))
        .unwrap_or(match client.spec.client_type {
            ClientType::Public => AuthMethod::None,
            ClientType::Confidential => AuthMethod::Basic,
        });
    ClientInformation {
        client_secret: None,
        client_id_issued_at: client
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        client_secret_expires_at: client
            .spec
            .secrets
            .iter()
            .find(|s| s.name == SECRET_ENTRY)
            .map(|s| s.expires_at.as_ref().map_or(0, |t| t.0.as_second())),
        client_name: client.spec.display_name.clone(),
        grant_types: client.spec.grant_types.iter().map(|g| g.as_str()).collect(),
        scope: (!client.spec.scopes.is_empty()).then(|| client.spec.scopes.join(" ")),
        redirect_uris: client.spec.redirect_uris.clone(),
        token_endpoint_auth_method: auth_method.as_str(),
        jwks: None,
        // Read back from the client on every answer (RFC 7592): a URL, not key material.
        jwks_uri: client
            .spec
            .authentication
            .as_ref()
            .and_then(|a| a.private_key_jwt.as_ref())
            .and_then(|p| p.jwks_uri.clone()),
        registration_access_token: None,
        registration_client_uri: format!("{}/register/{client_id}", issuer.trim_end_matches('/')),
        client_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GrantType, InitialAccessTokenSpec};

    fn iat() -> InitialAccessToken {
        let mut iat = InitialAccessToken::new(
            "team-a",
            InitialAccessTokenSpec {
                expires_after: Some("1h".parse().expect("duration")),
                expires_at: None,
                count: 3,
                policy: Default::default(),
            },
        );
        iat.metadata.namespace = Some("apps".into());
        iat
    }

    fn accepted(auth_method: AuthMethod) -> Accepted {
        Accepted {
            name: Some("billing".into()),
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec![crate::api::Scope::parse("read").expect("scope")],
            redirect_uris: vec![],
            auth_method,
            jwks: None,
            jwks_uri: None,
        }
    }

    fn policy() -> RegistrationPolicy {
        RegistrationPolicy {
            audiences: vec![crate::api::Audience::parse("https://api.test").expect("audience")],
            max_access_token_lifetime_seconds: Some(300),
            ..Default::default()
        }
    }

    #[test]
    fn a_confidential_client_is_labelled_and_points_at_its_registration_secret() {
        let expires = Timestamp::from_second(2_000_000_000).expect("time");
        let c = build_client(
            &iat(),
            &accepted(AuthMethod::Post),
            "dcr-1",
            &policy(),
            expires,
        );
        assert_eq!(c.namespace().as_deref(), Some("apps"));
        assert_eq!(c.labels().get(REGISTERED_BY_LABEL), Some(&"team-a".into()));
        assert_eq!(c.spec.client_type, ClientType::Confidential);
        assert_eq!(c.spec.access_token_lifetime_seconds, 300);
        assert_eq!(c.spec.audiences, vec!["https://api.test".to_string()]);
        let secret = c.spec.secrets.first().expect("one secret entry");
        let hash_ref = secret.hash_ref.as_ref().expect("hash ref");
        assert_eq!(hash_ref.name, "dcr-1-registration");
        assert_eq!(hash_ref.key, SECRET_HASH_KEY);
        assert_eq!(secret.expires_at, Some(Time(expires)));

        let info = information(&c, "https://issuer.test/");
        assert_eq!(info.token_endpoint_auth_method, "client_secret_post");
        assert_eq!(info.client_secret_expires_at, Some(2_000_000_000));
        assert_eq!(
            info.registration_client_uri,
            "https://issuer.test/register/dcr-1"
        );
        assert!(info.client_secret.is_none() && info.registration_access_token.is_none());
    }

    #[test]
    fn a_private_key_jwt_client_has_no_secret_and_reads_its_keys_from_its_registration_secret() {
        let expires = Timestamp::from_second(2_000_000_000).expect("time");
        let mut by_set = accepted(AuthMethod::PrivateKeyJwt);
        by_set.jwks = Some(r#"{"keys":[]}"#.into());
        let c = build_client(&iat(), &by_set, "dcr-2", &policy(), expires);
        assert_eq!(c.spec.client_type, ClientType::Confidential);
        assert!(c.spec.secrets.is_empty() && c.secret_entries().is_empty());
        let keys = c
            .spec
            .authentication
            .as_ref()
            .and_then(|a| a.private_key_jwt.as_ref())
            .expect("private_key_jwt");
        let keys = keys.jwks_secret_ref.as_ref().expect("the keys' Secret");
        assert_eq!(keys.name, "dcr-2-registration");
        assert_eq!(keys.key, JWKS_KEY);
        let info = information(&c, "https://issuer.test");
        assert_eq!(info.token_endpoint_auth_method, "private_key_jwt");
        assert_eq!(info.client_secret_expires_at, None);
        assert_eq!(info.jwks_uri, None);

        // Registered with a jwks_uri: the client reads its keys there, and says so.
        let mut by_uri = accepted(AuthMethod::PrivateKeyJwt);
        by_uri.jwks_uri = Some("https://billing.example/jwks.json".into());
        let c = build_client(&iat(), &by_uri, "dcr-3", &policy(), expires);
        let p = c
            .spec
            .authentication
            .as_ref()
            .and_then(|a| a.private_key_jwt.clone())
            .expect("private_key_jwt");
        assert_eq!(p.jwks_secret_ref, None);
        assert_eq!(
            p.jwks_uri.as_deref(),
            Some("https://billing.example/jwks.json")
        );
        let info = information(&c, "https://issuer.test");
        assert_eq!(
            info.jwks_uri.as_deref(),
            Some("https://billing.example/jwks.json")
        );
    }

    #[test]
    fn a_public_client_has_no_secret_entry() {
        let c = build_client(
            &iat(),
            &accepted(AuthMethod::None),
            "dcr-2",
            &policy(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(c.spec.client_type, ClientType::Public);
        assert!(c.spec.secrets.is_empty());
        let info = information(&c, "https://issuer.test");
        assert_eq!(info.token_endpoint_auth_method, "none");
        assert_eq!(info.client_secret_expires_at, None);
    }

    #[test]
    fn the_plaintext_secret_is_written_only_when_the_policy_asks() {
        let plaintext = SecretString::new("s3cret".into());
        let secret = |write_secret| {
            registration_secret(RegistrationSecret {
                namespace: "apps",
                initial_access_token: "team-a",
                client_id: "dcr-1",
                access_token_hash: "$argon2id$rat".into(),
                secret_hash: Some("$argon2id$sec".into()),
                plaintext_secret: Some(&plaintext),
                jwks: None,
                write_secret,
                owner: None,
            })
            .string_data
            .unwrap_or_default()
        };
        let hashes_only = secret(false);
        assert_eq!(
            hashes_only.keys().collect::<Vec<_>>(),
            vec![SECRET_HASH_KEY, ACCESS_TOKEN_HASH_KEY]
        );
        let with_plaintext = secret(true);
        assert_eq!(
            with_plaintext.get("client_secret").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            with_plaintext.get("client_id").map(String::as_str),
            Some("dcr-1")
        );
    }
}
