//! The secrets of a client: expiry, state, and the content of the credentials Secret.
//! Pure functions over the spec, the current Secret and the clock.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::api::{ClientSecret, SecretState};
use crate::auth::secret::SecretString;

/// Annotation on the credentials Secret recording when each generated secret was created
/// (JSON: entry name -> RFC 3339 time). Written together with the values, so the record
/// survives a lost status.
pub const CREATED_ANNOTATION: &str = "oauth-operator.dev/secrets-created";

/// Secrets expire one year after creation unless the spec says otherwise (seed 001).
pub const DEFAULT_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);

/// When a secret created at `created` expires: `None` for never.
pub fn expiry(spec: &ClientSecret, created: Timestamp) -> Option<Timestamp> {
    if spec.never_expires == Some(true) {
        return None;
    }
    if let Some(at) = &spec.expires_at {
        return Some(at.0);
    }
    let validity = spec
        .expires_after
        .as_ref()
        .and_then(|d| d.to_signed().ok())
        .unwrap_or(DEFAULT_VALIDITY);
    created.checked_add(validity).ok()
}

/// The state of a secret expiring at `expires`, with `warn` as the expiring-soon window.
pub fn state(expires: Option<Timestamp>, now: Timestamp, warn: SignedDuration) -> SecretState {
    match expires {
        None => SecretState::Valid,
        Some(t) if t <= now => SecretState::Expired,
        Some(t) if t.duration_since(now) <= warn => SecretState::ExpiringSoon,
        Some(_) => SecretState::Valid,
    }
}

/// The creation times recorded on the credentials Secret.
pub fn created_times(secret: Option<&Secret>) -> BTreeMap<String, Timestamp> {
    secret
        .and_then(|s| s.metadata.annotations.as_ref())
        .and_then(|a| a.get(CREATED_ANNOTATION))
        .and_then(|json| serde_json::from_str::<BTreeMap<String, Timestamp>>(json).ok())
        .unwrap_or_default()
}

/// The annotation value recording `created`.
pub fn created_annotation(created: &BTreeMap<String, Timestamp>) -> String {
    serde_json::to_string(created).unwrap_or_else(|_| "{}".into())
}

/// The key a named secret is written under.
pub fn entry_key(client_secret_key: &str, name: &str) -> String {
    format!("{client_secret_key}.{name}")
}

/// A value from a Secret's data, as text.
pub fn value(secret: &Secret, key: &str) -> Option<SecretString> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    (!text.is_empty()).then(|| SecretString::new(text))
}

/// Bytes for a Secret's data.
pub fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ClientSecret {
        ClientSecret {
            name: "a".into(),
            description: None,
            expires_after: None,
            expires_at: None,
            never_expires: None,
            secret_key_ref: None,
            hash_ref: None,
        }
    }

    #[test]
    fn expiry_defaults_to_one_year_and_follows_the_spec() {
        let created: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let e = entry();
        assert_eq!(
            expiry(&e, created),
            Some("2027-01-01T00:00:00Z".parse().expect("ts"))
        );
        let never = ClientSecret {
            never_expires: Some(true),
            ..entry()
        };
        assert_eq!(expiry(&never, created), None);
        let after = ClientSecret {
            expires_after: Some("2d".parse().expect("duration")),
            ..entry()
        };
        assert_eq!(
            expiry(&after, created),
            Some("2026-01-03T00:00:00Z".parse().expect("ts"))
        );
    }

    #[test]
    fn states() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let week = SignedDuration::from_hours(168);
        assert_eq!(state(None, now, week), SecretState::Valid);
        assert_eq!(state(Some(now), now, week), SecretState::Expired);
        let soon = now.checked_add(SignedDuration::from_hours(24)).expect("ts");
        assert_eq!(state(Some(soon), now, week), SecretState::ExpiringSoon);
        let later = now
            .checked_add(SignedDuration::from_hours(24 * 30))
            .expect("ts");
        assert_eq!(state(Some(later), now, week), SecretState::Valid);
    }

    #[test]
    fn created_times_round_trip_through_the_annotation() {
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            "2026-01-01T00:00:00Z".parse::<Timestamp>().expect("ts"),
        );
        let mut s = Secret::default();
        s.metadata.annotations = Some(BTreeMap::from([(
            CREATED_ANNOTATION.to_string(),
            created_annotation(&m),
        )]));
        assert_eq!(created_times(Some(&s)), m);
        assert!(created_times(None).is_empty());
    }
}
