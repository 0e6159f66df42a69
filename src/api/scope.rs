//! Scope tokens (RFC 6749 section 3.3): the one grammar for `spec.scopes` of an OAuthClient,
//! `spec.policy.scopes` of an InitialAccessToken and the `scope` of a token request.
//!
//! <https://www.rfc-editor.org/rfc/rfc6749#section-3.3>

use schemars::json_schema;
use serde::{Deserialize, Serialize};

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`: printable ASCII but space, `"` and `\`.
pub const SCOPE_PATTERN: &str = r"^[\x21\x23-\x5B\x5D-\x7E]+$";

/// The longest scope a resource may hold: bounds what a client's list costs the index and a
/// token's `scope` claim.
pub const SCOPE_MAX_LENGTH: usize = 128;

/// Why a text is not a scope token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The empty string.
    #[error("a scope must not be empty")]
    Empty,
    /// Longer than [`SCOPE_MAX_LENGTH`].
    #[error("a scope has at most {SCOPE_MAX_LENGTH} characters")]
    TooLong,
    /// A character RFC 6749 section 3.3 leaves out (space, `"`, `\`, control or non-ASCII).
    #[error("{0:?} is not allowed in a scope (RFC 6749 section 3.3)")]
    Character(char),
}

/// Whether `s` is a scope-token by RFC 6749 section 3.3 alone, at any length: what the token
/// endpoint checks a request's space-separated `scope` (and `audience`) values with. The
/// length bound of [`Scope::parse`] is for what resources hold; a longer requested value
/// is then simply not among the client's.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_scope_char)
}

/// `%x21 / %x23-5B / %x5D-7E`.
fn is_scope_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// One scope token, e.g. `invoices.read`. Decoding does not check it: the API server did,
/// with the schema below, and a watch that fails to decode one stored object stops for every
/// object. Text from anywhere else goes through [`Scope::parse`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Scope(String);

impl Scope {
    /// Checks `s` against the scope-token grammar and the schema's length bound.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        if let Some(c) = s.chars().find(|&c| !is_scope_char(c)) {
            return Err(ScopeError::Character(c));
        }
        // Only ASCII is left, so bytes count characters as the API server does.
        if s.len() > SCOPE_MAX_LENGTH {
            return Err(ScopeError::TooLong);
        }
        Ok(Scope(s.to_string()))
    }
}

super::text::text_type!(
    Scope,
    "Scope",
    json_schema!({
        "type": "string",
        "description": "A scope token (RFC 6749 section 3.3): printable ASCII without spaces, quotes (\") or backslashes, e.g. `invoices.read`.",
        "pattern": SCOPE_PATTERN,
        "minLength": 1,
        "maxLength": SCOPE_MAX_LENGTH,
    }),
    compare
);

#[cfg(test)]
mod tests {
    use schemars::{JsonSchema, SchemaGenerator};

    use super::*;

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        for ok in [
            "read",
            "invoices.read",
            "https://api.example.test/read",
            "!#[]~",
            "a",
        ] {
            assert_eq!(Scope::parse(ok).map(|s| s.to_string()), Ok(ok.to_string()));
        }
        assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
        assert_eq!(Scope::parse("a b"), Err(ScopeError::Character(' ')));
        assert_eq!(Scope::parse("a\"b"), Err(ScopeError::Character('"')));
        assert_eq!(Scope::parse("a\\b"), Err(ScopeError::Character('\\')));
        assert_eq!(Scope::parse("a\tb"), Err(ScopeError::Character('\t')));
        assert_eq!(Scope::parse("a\x7fb"), Err(ScopeError::Character('\x7f')));
        assert_eq!(Scope::parse("é"), Err(ScopeError::Character('é')));
        assert!(Scope::parse(&"a".repeat(SCOPE_MAX_LENGTH)).is_ok());
        assert_eq!(
            Scope::parse(&"a".repeat(SCOPE_MAX_LENGTH + 1)),
            Err(ScopeError::TooLong)
        );
    }

    /// Every byte the parser takes alone is one the pattern's class lists, and no other.
    #[test]
    fn the_schema_lists_the_parser_characters() {
        let schema = serde_json::to_value(Scope::json_schema(&mut SchemaGenerator::default()))
            .expect("schema");
        assert_eq!(schema["pattern"], SCOPE_PATTERN);
        assert_eq!(schema["maxLength"], SCOPE_MAX_LENGTH);
        assert_eq!(schema["minLength"], 1);
        let in_class =
            |b: u8| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b);
        for b in 0u8..=0x7F {
            let s = char::from(b).to_string();
            assert_eq!(Scope::parse(&s).is_ok(), in_class(b), "byte {b:#x}");
            assert_eq!(is_scope_token(&s), in_class(b), "byte {b:#x}");
        }
        assert!(!is_scope_token(""));
        assert!(is_scope_token(&"a".repeat(SCOPE_MAX_LENGTH + 1)));
    }

    #[test]
    fn reads_and_compares_as_text() {
        let s: Scope = serde_json::from_str("\"read\"").expect("decodes");
        assert_eq!(s, *"read");
        assert_eq!(s, "read".to_string());
        assert_eq!(serde_json::to_string(&s).expect("encodes"), "\"read\"");
        let list = [s.clone(), Scope::parse("write").expect("scope")];
        assert_eq!(list.join(" "), "read write");
    }
}
