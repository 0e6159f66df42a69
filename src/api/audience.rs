//! Audiences: the values a token's `aud` claim may carry (RFC 7519 section 4.1.3), listed by
//! `spec.audiences` of an OAuthClient and `spec.policy.audiences` of an InitialAccessToken.

use schemars::json_schema;
use serde::{Deserialize, Serialize};

/// The longest audience a resource may hold.
pub const AUDIENCE_MAX_LENGTH: usize = 256;

/// Why a text is not an audience.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    /// The empty string.
    #[error("an audience must not be empty")]
    Empty,
    /// Longer than [`AUDIENCE_MAX_LENGTH`] characters.
    #[error("an audience has at most {AUDIENCE_MAX_LENGTH} characters")]
    TooLong,
}

/// One audience, usually the URL of the API the token is for. RFC 7519 allows any string
/// here, and the schema has only ever bounded its length, so there is no pattern: one would
/// refuse resources that are valid today. Decoding does not check it, for the reason
/// [`super::Scope`] gives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Audience(String);

impl Audience {
    /// Checks `s` against the schema's bounds.
    pub fn parse(s: &str) -> Result<Audience, AudienceError> {
        if s.is_empty() {
            return Err(AudienceError::Empty);
        }
        // The API server counts characters (runes), not bytes.
        if s.chars().count() > AUDIENCE_MAX_LENGTH {
            return Err(AudienceError::TooLong);
        }
        Ok(Audience(s.to_string()))
    }
}

super::text::text_type!(
    Audience,
    "Audience",
    json_schema!({
        "type": "string",
        "description": "An audience (`aud`, RFC 7519 section 4.1.3): names the API a token is for, usually its URL, e.g. `https://invoices.internal.example.com`.",
        "minLength": 1,
        "maxLength": AUDIENCE_MAX_LENGTH,
    }),
    compare
);

#[cfg(test)]
mod tests {
    use schemars::{JsonSchema, SchemaGenerator};

    use super::*;

    #[test]
    fn audiences_are_bounded_strings() {
        for ok in [
            "https://api.example.test",
            "billing",
            "urn:example:api",
            "a b",
        ] {
            assert_eq!(
                Audience::parse(ok).map(|a| a.to_string()),
                Ok(ok.to_string())
            );
        }
        assert_eq!(Audience::parse(""), Err(AudienceError::Empty));
        assert!(Audience::parse(&"a".repeat(AUDIENCE_MAX_LENGTH)).is_ok());
        // Counted in characters: 256 two-byte characters fit.
        assert!(Audience::parse(&"é".repeat(AUDIENCE_MAX_LENGTH)).is_ok());
        assert_eq!(
            Audience::parse(&"a".repeat(AUDIENCE_MAX_LENGTH + 1)),
            Err(AudienceError::TooLong)
        );
    }

    #[test]
    fn the_schema_has_the_parser_bounds() {
        let schema = serde_json::to_value(Audience::json_schema(&mut SchemaGenerator::default()))
            .expect("schema");
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], AUDIENCE_MAX_LENGTH);
        assert_eq!(schema["type"], "string");
    }

    #[test]
    fn reads_and_compares_as_text() {
        let a: Audience = serde_json::from_str("\"https://one.test\"").expect("decodes");
        assert_eq!(a, "https://one.test".to_string());
        assert_eq!(
            serde_json::to_string(&a).expect("encodes"),
            "\"https://one.test\""
        );
    }
}
