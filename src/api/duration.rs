//! The one duration grammar of the API: `spec.expiresAfter` on an InitialAccessToken and on
//! each OAuthClient secret, and the operator's duration flags, all read `90d`, `12h30m`, `1w`
//! through [`parse_duration`], and both CRDs carry the schema of [`Duration`].

use std::str::FromStr;

use jiff::SignedDuration;
use schemars::json_schema;
use serde::{Deserialize, Serialize};

/// The grammar in words, shared by the schema and the `///` of every duration field so that
/// `kubectl explain` states it the same way everywhere.
macro_rules! duration_grammar {
    () => {
        "A duration is one or more parts of a whole number and a unit, s (seconds), m (minutes), h (hours), d (days) or w (weeks), added up, e.g. `90d`, `12h30m` or `1w`; it must be longer than zero."
    };
}
pub(crate) use duration_grammar;

/// What the API server matches a duration against: the grammar of [`parse_duration`]. Both
/// earlier grammars (`s|m|h|d` on InitialAccessToken, up to six digits with `w` on
/// OAuthClient) are within it, so no value admitted before is refused now, except zero.
pub const DURATION_PATTERN: &str = r"^([0-9]+[smhdw])+$";

/// Longer than any real duration; bounded so that the API server can cost the CEL rule that
/// refuses zero (an unbounded string makes the rule's estimated cost exceed its budget).
pub const DURATION_MAX_LENGTH: u32 = 64;

/// Refuses zero: the pattern admits `0s`, and a token or secret valid for no time at all is a
/// mistake the API server should report, not one the controller finds later. Some digit other
/// than 0 means some part, and hence the sum, is above zero.
const NOT_ZERO_RULE: &str = "self.matches('[1-9]')";

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty, a unit without a number, a number without a unit, or an unknown unit.
    #[error("{0:?} is not a duration like 90d, 12h30m or 1w (units s, m, h, d, w)")]
    Malformed(String),
    /// Adds up to no time at all.
    #[error("{0:?} is zero; a duration must be longer than zero")]
    Zero(String),
    /// Adds up to more seconds than an `i64` holds.
    #[error("{0:?} is longer than this operator can represent")]
    Overflow(String),
    /// Longer text than the schema's `maxLength`.
    #[error("a duration has at most {DURATION_MAX_LENGTH} characters")]
    TooLong,
}

/// Parses `90d`, `12h30m`, `1w`: exactly what the schema of [`Duration`] admits, less values
/// past `i64` seconds.
pub fn parse_duration(s: &str) -> Result<SignedDuration, DurationError> {
    if s.len() > DURATION_MAX_LENGTH as usize {
        return Err(DurationError::TooLong);
    }
    let malformed = || DurationError::Malformed(s.to_string());
    let mut total: i64 = 0;
    let mut number: Option<i64> = None;
    for c in s.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(digit)))
                    .ok_or_else(|| DurationError::Overflow(s.to_string()))?,
            );
            continue;
        }
        let n = number.take().ok_or_else(malformed)?;
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(malformed()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
    }
    // A trailing number without its unit, or nothing at all.
    if number.is_some() || s.is_empty() {
        return Err(malformed());
    }
    if total == 0 {
        return Err(DurationError::Zero(s.to_string()));
    }
    Ok(SignedDuration::from_secs(total))
}

/// A duration as written in a resource, e.g. `90d`: kept as text so that it reads back as the
/// user wrote it. Decoding does not check it, because the API server already did with the
/// schema below, and a watch that fails to decode one stored object (say a `0s` admitted
/// before zero was refused) stops for every object; [`Duration::to_signed`] checks it where
/// it is used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Duration(String);

impl Duration {
    /// Its length, by [`parse_duration`].
    pub fn to_signed(&self) -> Result<SignedDuration, DurationError> {
        parse_duration(&self.0)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    /// Only a valid duration: code that makes one gets the checks the API server makes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s)?;
        Ok(Duration(s.to_string()))
    }
}

super::text::text_type!(
    Duration,
    "Duration",
    json_schema!({
        "type": "string",
        "description": duration_grammar!(),
        "pattern": DURATION_PATTERN,
        "maxLength": DURATION_MAX_LENGTH,
        "x-kubernetes-validations": [{
            "rule": NOT_ZERO_RULE,
            "message": "must be longer than zero, e.g. 30m, 12h or 90d",
        }],
    })
);

#[cfg(test)]
mod tests {
    use schemars::{JsonSchema, SchemaGenerator};

    use super::*;

    #[test]
    fn parses_every_unit_and_sums_the_parts() {
        assert_eq!(parse_duration("45s"), Ok(SignedDuration::from_secs(45)));
        assert_eq!(parse_duration("1h30m"), Ok(SignedDuration::from_mins(90)));
        assert_eq!(
            parse_duration("90d"),
            Ok(SignedDuration::from_hours(90 * 24))
        );
        assert_eq!(parse_duration("1w"), Ok(SignedDuration::from_hours(168)));
        assert_eq!(
            parse_duration("1w1d1h1m1s"),
            Ok(SignedDuration::from_secs(694_861))
        );
        assert_eq!(parse_duration("0h5m"), Ok(SignedDuration::from_mins(5)));
        assert_eq!(parse_duration("007d"), Ok(SignedDuration::from_hours(168)));
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for bad in [
            "", "10", "h", "5y", "1.5h", "-1h", "1h ", " 1h", "1H", "3 months",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Malformed(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_zero_and_overflow() {
        for zero in ["0s", "0h0m", "00d", "0w0s"] {
            assert_eq!(
                parse_duration(zero),
                Err(DurationError::Zero(zero.into())),
                "{zero:?}"
            );
        }
        let huge = "99999999999999999999s";
        assert_eq!(
            parse_duration(huge),
            Err(DurationError::Overflow(huge.into()))
        );
        let wide = "99999999999999w";
        assert_eq!(
            parse_duration(wide),
            Err(DurationError::Overflow(wide.into()))
        );
        assert_eq!(
            parse_duration(&"1s".repeat(33)),
            Err(DurationError::TooLong)
        );
        assert!(parse_duration(&"1s".repeat(32)).is_ok());
    }

    /// The schema's pattern and rule admit what the parser admits, on a sample of both.
    #[test]
    fn the_schema_agrees_with_the_parser() {
        // The pattern by hand, as RE2 reads it: one or more digit runs each followed by a unit.
        fn matches_pattern(s: &str) -> bool {
            let mut digits = 0;
            let mut parts = 0;
            for c in s.chars() {
                match c {
                    '0'..='9' => digits += 1,
                    's' | 'm' | 'h' | 'd' | 'w' if digits > 0 => {
                        digits = 0;
                        parts += 1;
                    }
                    _ => return false,
                }
            }
            digits == 0 && parts > 0
        }
        let not_zero = |s: &str| s.chars().any(|c| ('1'..='9').contains(&c));
        let long = "1s".repeat(33);
        for s in [
            "1s", "0s", "12h30m", "1w", "5y", "", "10", "0h0m", "00d", "1d0h", &long,
        ] {
            let schema_admits =
                matches_pattern(s) && not_zero(s) && s.len() <= DURATION_MAX_LENGTH as usize;
            assert_eq!(schema_admits, parse_duration(s).is_ok(), "{s:?}");
        }
        let schema = serde_json::to_value(Duration::json_schema(&mut SchemaGenerator::default()))
            .expect("schema");
        assert_eq!(schema["pattern"], DURATION_PATTERN);
        assert_eq!(schema["x-kubernetes-validations"][0]["rule"], NOT_ZERO_RULE);
        assert_eq!(schema["maxLength"], DURATION_MAX_LENGTH);
    }

    #[test]
    fn reads_and_writes_the_text_as_written() {
        let d: Duration = serde_json::from_str("\"12h30m\"").expect("decodes");
        assert_eq!(d.as_str(), "12h30m");
        assert_eq!(d.to_signed(), Ok(SignedDuration::from_mins(750)));
        assert_eq!(serde_json::to_string(&d).expect("encodes"), "\"12h30m\"");
        // A stored zero still decodes (see the type's docs); using it is what fails.
        let zero: Duration = serde_json::from_str("\"0s\"").expect("decodes");
        assert_eq!(zero.to_signed(), Err(DurationError::Zero("0s".into())));
        assert!("0s".parse::<Duration>().is_err());
        assert_eq!(
            "1w".parse::<Duration>().map(|d| d.to_string()),
            Ok("1w".into())
        );
    }
}
