//! Who may have a token for which API: the one decision every grant makes.
//!
//! An API's team claims its audience with an `OAuthResource` and grants its scopes and
//! roles to clients; a client's `audiences`, `scopes` and `roles` are what it asks for,
//! and it gets the part granted. [`resources`] is the table of claims (who holds each
//! audience: the oldest claim) and of grants (which clients each claim serves); [`decide`]
//! is the pure function the token server calls for every token it issues, and checks
//! again at a refresh and at introspection, from the index alone. The controller calls the
//! same functions to tell each client, in its status, what it gets and why not.
//!
//! Audiences nobody claims are the installation's [`Mode`]'s: served silently (`Off`),
//! served and reported (`Warn`), or refused (`Enforce`). A claimed audience is enforced
//! in every mode, so an API's team protects its API the day it writes its resource.

pub mod decide;
pub mod policy;
pub mod resources;

pub use decide::{
    Asker, AudienceState, Decision, Flow, Refusal, Request, Settings, audience_view, decide,
};
pub use resources::{Granted, ResourceEntry, Resources, normalize};

/// What the token server does with audiences no `OAuthResource` claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Serve them as the client's spec lists them, as before resources existed.
    Off,
    /// Serve them, and report each token (audit line, metric) and each client (condition).
    #[default]
    Warn,
    /// Refuse them (`invalid_target`).
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "Off",
            Mode::Warn => "Warn",
            Mode::Enforce => "Enforce",
        }
    }
}
