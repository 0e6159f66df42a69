//! The edge of [`crate::tenancy`]: what a request names as its target (RFC 8707's
//! `resource`, or `audience`, kept as its older alias), the decision taken from the
//! index, its refusals as RFC errors, and the report of every token served for an
//! audience nobody claims (audit line and metric, under `Warn`).

use super::AppState;
use super::error::OAuthError;
use crate::index::ClientEntry;
use crate::tenancy::{self, Asker, Decision, Flow, Refusal, Request, Settings};

/// The scopes of OpenID Connect, which every client allowed the authorization code grant
/// may ask for: they are about the user, who is signing in, not about an API, so no
/// resource owns them.
pub const IDENTITY_SCOPES: [&str; 4] = ["openid", "profile", "email", "groups"];

/// The default audience and the issuer, normalised.
#[derive(Debug)]
pub struct ReservedKeys {
    pub default_audience: String,
    pub issuer: String,
}

impl ReservedKeys {
    pub fn of(config: &super::Config) -> Self {
        ReservedKeys {
            default_audience: tenancy::normalize(&config.default_audience),
            issuer: tenancy::normalize(&config.issuer),
        }
    }
}

/// The targets a request names: `resource` (one absolute URI, RFC 8707 section 2) or
/// `audience` (space-separated, as before). Both at once is ambiguous.
pub fn targets(
    resource: Option<&str>,
    audience: Option<&str>,
) -> Result<Option<Vec<String>>, OAuthError> {
    match (resource, audience) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest(
            "resource and audience name the same thing: send one",
        )),
        // RFC 8707 section 2: an absolute URI without a fragment. Anything else names
        // nothing this server could know.
        (Some(r), None) if r.contains('#') || !r.contains(':') || r.contains(' ') => {
            Err(OAuthError::InvalidTarget)
        }
        (Some(r), None) => Ok(Some(vec![r.to_string()])),
        (None, Some(a)) => {
            let list: Vec<String> = a
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if list.is_empty() || !list.iter().all(|t| crate::api::is_scope_token(t)) {
                return Err(OAuthError::InvalidTarget);
            }
            Ok(Some(list))
        }
        (None, None) => Ok(None),
    }
}

/// The decision for `client` from what the index holds now: no API call.
pub fn decide(
    state: &AppState,
    client: &ClientEntry,
    targets: Option<&[String]>,
    scope: Option<&[String]>,
    flow: Flow<'_>,
) -> Result<Decision, OAuthError> {
    let namespace_labels = state
        .config
        .namespace_selectors
        .then(|| state.index.namespace_labels(&client.namespace));
    let asker = Asker {
        client_id: &client.client_id,
        namespace: &client.namespace,
        labels: &client.labels,
        namespace_labels: namespace_labels.as_ref().map(|l| l.as_ref()),
        audiences: &client.audiences,
        audience_keys: &client.audience_keys,
        scopes: &client.scopes,
        roles: &client.roles,
        lifetime: client.access_token_lifetime_seconds,
    };
    let reserved = |key: &str| reserved(state, key);
    let settings = Settings {
        mode: state.config.audience_ownership,
        default_audience: &state.config.default_audience,
        default_key: &state.reserved_keys.default_audience,
        default_role: &state.config.default_role,
        reserved: &reserved,
    };
    let request = Request {
        targets,
        scope,
        flow,
    };
    state
        .index
        .with_resources(|table| tenancy::decide(&asker, table, &settings, &request))
        .map_err(|r| match r {
            Refusal::InvalidTarget => OAuthError::InvalidTarget,
            Refusal::InvalidScope => OAuthError::InvalidScope,
        })
}

/// Whether a normalised audience is one no resource may claim: the issuer, or a client id
/// (an ID token's `aud`).
fn reserved(state: &AppState, key: &str) -> bool {
    key == state.reserved_keys.issuer || state.index.client(key).is_some()
}

/// Counts and logs a token issued for audiences nobody claims (never under `Enforce`),
/// so the recipe's metric shows who still depends on them.
pub fn report(state: &AppState, client: &ClientEntry, decision: &Decision) {
    if decision.unclaimed.is_empty() {
        return;
    }
    state.metrics.unclaimed_audience_tokens.inc();
    if state.config.audience_ownership == tenancy::Mode::Warn {
        tracing::info!(
            target: "audit",
            event = "unclaimed_audience",
            client_id = %client.client_id,
            namespace = %client.namespace,
            audiences = %decision.unclaimed.join(" "),
            "a token was issued for audiences no OAuthResource claims"
        );
    }
}

/// Whether a token the server issued still holds as the decision stands now: the same
/// targets, and a scope within what is granted. A grant withdrawn (or a claim taken) since
/// makes it inactive at introspection, within the watch's delay.
pub fn still_granted(
    state: &AppState,
    client: &ClientEntry,
    audiences: Option<&[String]>,
    scope: Option<&str>,
    user: bool,
) -> bool {
    let scope: Vec<String> = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let flow = if user {
        Flow::User {
            groups: &[],
            identity_scopes: &IDENTITY_SCOPES,
        }
    } else {
        Flow::Client
    };
    decide(state, client, audiences, Some(&scope), flow).is_ok()
}
