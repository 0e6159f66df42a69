//! How many times a client's access token may be refreshed: the seeds' "refresh count",
//! a number or `Unlimited`, written as Kubernetes writes such values (int-or-string).
//! Decoding is lenient, like [`super::Duration`]'s: the API server checked the value with
//! the schema below, and a watch that cannot decode one stored object stops for all.

use schemars::json_schema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `Unlimited`, or at most this many refreshes; 0 means no refresh token at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshCount {
    Limited(u32),
    Unlimited,
}

/// The word for [`RefreshCount::Unlimited`].
pub const UNLIMITED: &str = "Unlimited";

impl RefreshCount {
    /// `None` for unlimited, else the number of refreshes allowed.
    pub fn limit(self) -> Option<u32> {
        match self {
            RefreshCount::Limited(n) => Some(n),
            RefreshCount::Unlimited => None,
        }
    }

    /// Whether a refresh token is issued at all.
    pub fn allows_refresh(self) -> bool {
        self != RefreshCount::Limited(0)
    }
}

impl Serialize for RefreshCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RefreshCount::Limited(n) => s.serialize_u32(*n),
            RefreshCount::Unlimited => s.serialize_str(UNLIMITED),
        }
    }
}

impl<'de> Deserialize<'de> for RefreshCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == UNLIMITED => Ok(RefreshCount::Unlimited),
            serde_json::Value::Number(n) => Ok(RefreshCount::Limited(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(u32::MAX),
            )),
            // Not admitted by the schema; read as "no refresh token", the safe side.
            _ => Ok(RefreshCount::Limited(0)),
        }
    }
}

impl schemars::JsonSchema for RefreshCount {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RefreshCount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "x-kubernetes-validations": [{
                "rule": "type(self) == int ? (self >= 0 && self <= 1000000) : self == 'Unlimited'",
                "message": "must be a number of refreshes from 0 (no refresh token) to 1000000, or Unlimited",
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_unlimited_round_trip() {
        for (json, count) in [
            ("5", RefreshCount::Limited(5)),
            ("0", RefreshCount::Limited(0)),
            ("\"Unlimited\"", RefreshCount::Unlimited),
        ] {
            let got: RefreshCount = serde_json::from_str(json).expect("decodes");
            assert_eq!(got, count);
            assert_eq!(serde_json::to_string(&count).expect("encodes"), json);
        }
        assert!(!RefreshCount::Limited(0).allows_refresh());
        assert_eq!(RefreshCount::Unlimited.limit(), None);
    }

    #[test]
    fn what_the_schema_refuses_decodes_to_no_refresh() {
        let got: RefreshCount = serde_json::from_str("\"lots\"").expect("decodes");
        assert_eq!(got, RefreshCount::Limited(0));
    }
}
