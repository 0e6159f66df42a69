//! What the API's text-backed value types (`Duration`, `Scope`, `Audience`) have in common:
//! each holds the text as the user wrote it, reads as that text, and has one inline schema.
//! One macro writes those impls, so the three types differ only in their grammar.

/// Implements `as_str`, `Deref<Target = str>`, `Display` and an inline `JsonSchema` named
/// `$name` with the given schema for a `struct $ty(String)`; with `compare`, also
/// `Borrow<str>` and equality with text, so that a list of them is looked up, joined and
/// compared by `&str` (what requests bring).
macro_rules! text_type {
    ($ty:ident, $name:literal, $schema:expr) => {
        impl $ty {
            /// The text as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                $schema
            }
        }
    };
    ($ty:ident, $name:literal, $schema:expr, compare) => {
        $crate::api::text::text_type!($ty, $name, $schema);

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

pub(crate) use text_type;
