//! `grant_type=refresh_token` (RFC 6749 section 6), with rotation and reuse detection
//! (RFC 9700 section 4.14.2).
//!
//! A refresh token is sealed ([`crate::auth::seal`]): it names its grant, its client and
//! its generation, and expires when unused for the client's idle lifetime. The grant's
//! `OAuthGrant` holds the one generation that is current and how many refreshes were
//! made; it holds no token and no hash, so the API server stores nothing an attacker could
//! use. A refresh reads the grant (a quorum read: every replica sees the same), decides
//! ([`judge`], pure), and replaces the object with the resourceVersion it read, so of two
//! refreshes with the same token only one succeeds anywhere: the count is exact. The
//! other one is a reuse, as is any token of an earlier generation: the grant is revoked,
//! which ends every token it issued. Two concurrent refreshes of one token by the rightful
//! client are treated as a reuse too: RFC 9700 prefers a false alarm to a stolen token
//! kept alive.

use axum::Json;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};

use super::authorization_code::{Session, client, decide_for_user, grant_name, user_tokens};
use super::{Refusal, TokenResponse, parse_scope};
use std::sync::Arc;

use crate::api::{GrantRefresh, OAuthGrant, OAuthGrantSpec, RefreshPolicy};
use crate::auth::seal::{Purpose, SealError, Sealer};
use crate::index::{ClientEntry, UserEntry};
use crate::server::AppState;
use crate::server::client_auth::BasicHeader;
use crate::server::error::OAuthError;
use crate::server::form::Form;

/// What a refresh token holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RefreshClaims {
    pub grant_id: String,
    pub client_id: String,
    pub generation: u32,
    /// Unix seconds; the envelope's expiry, repeated for introspection.
    pub exp: i64,
}

/// The refresh token of `generation`: valid for the idle lifetime, never past `until`.
pub(super) fn seal(
    sealer: &Sealer,
    client: &ClientEntry,
    grant_id: &str,
    generation: u32,
    now: i64,
    until: i64,
    policy: &RefreshPolicy,
) -> Result<String, OAuthError> {
    let exp = (now + policy.idle_lifetime_seconds).min(until);
    let claims = RefreshClaims {
        grant_id: grant_id.to_string(),
        client_id: client.client_id.clone(),
        generation,
        exp,
    };
    sealer
        .seal(Purpose::RefreshToken, exp, &claims)
        .map_err(|e: SealError| {
            tracing::error!(error = %e, "sealing a refresh token failed");
            OAuthError::ServerError
        })
}

/// The claims of `token`, if it is an unexpired refresh token of this server.
pub fn open(state: &AppState, token: &str, now: i64) -> Option<RefreshClaims> {
    state
        .index
        .keys()?
        .sealer
        .as_ref()?
        .open(Purpose::RefreshToken, token, now)
}

/// The user of `grant`, if its tokens still hold for `client`: the very client it was
/// made to (not another of the same id since), not deactivated since the sign-in, and the
/// user still there and enabled (a user of an upstream provider: the provider still
/// there). A refresh and the introspection of a refresh token ask exactly this.
pub fn grant_user(
    state: &AppState,
    client: &ClientEntry,
    grant: &OAuthGrantSpec,
) -> Option<Arc<UserEntry>> {
    let deactivated_since = client
        .not_before
        .is_some_and(|nbf| grant.auth_time.0.as_second() < nbf);
    if deactivated_since || grant.client_uid != client.uid {
        return None;
    }
    crate::server::upstream::user(state, &grant.subject, grant.upstream.as_ref())
        .filter(|u| u.name == grant.username)
}

/// What a refresh may do with a grant.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Refresh, and store this as the grant's new state.
    Refresh(GrantRefresh),
    /// A spent token came back: revoke the grant.
    Reuse,
    /// Refuse (`invalid_grant`) and leave the grant as it is.
    Refuse(&'static str),
}

/// The decision for a token of `generation` against the grant's `state`.
pub fn judge(
    state: Option<&GrantRefresh>,
    generation: u32,
    policy: &RefreshPolicy,
    now: jiff::Timestamp,
) -> Verdict {
    let Some(s) = state else {
        return Verdict::Refuse("the grant has no refresh tokens");
    };
    if generation < s.generation {
        return Verdict::Reuse;
    }
    if generation > s.generation {
        return Verdict::Refuse("no such generation");
    }
    if now >= s.refresh_until.0 {
        return Verdict::Refuse("past the maximum lifetime");
    }
    if policy.count.is_some_and(|limit| s.refreshes >= limit) {
        return Verdict::Refuse("the refresh count is used up");
    }
    Verdict::Refresh(GrantRefresh {
        generation: s.generation.saturating_add(1),
        refreshes: s.refreshes.saturating_add(1),
        refresh_until: s.refresh_until.clone(),
        last_refreshed_at: Some(Time(now)),
    })
}

pub(super) async fn refresh(
    state: &AppState,
    basic: BasicHeader,
    form: &Form,
) -> Result<(String, Response), Refusal> {
    let anon = |e| (None, e);
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| anon(OAuthError::InvalidRequest("refresh_token is missing")))?;
    let requested = parse_scope(form.get("scope")).map_err(anon)?;
    let client = client(state, basic, form).await?;
    let id = Some(client.client_id.clone());
    let fail = |e| (id.clone(), e);
    let policy = client
        .refresh
        .clone()
        .filter(|_| client.grant_types.iter().any(|g| g == "refresh_token"))
        .ok_or_else(|| fail(OAuthError::UnauthorizedClient))?;
    let keys = state
        .index
        .keys()
        .ok_or_else(|| fail(OAuthError::TemporarilyUnavailable))?;
    let sealer = keys
        .sealer
        .as_ref()
        .ok_or_else(|| fail(OAuthError::TemporarilyUnavailable))?;
    let now = jiff::Timestamp::now();
    let token = open(state, presented, now.as_second())
        .filter(|t| t.client_id == client.client_id)
        .ok_or_else(|| fail(OAuthError::InvalidGrant))?;
    if state.index.is_revoked(&token.grant_id) || !client.active {
        return Err(fail(OAuthError::InvalidGrant));
    }
    let kube = state
        .kube
        .as_ref()
        .ok_or_else(|| fail(OAuthError::TemporarilyUnavailable))?;
    let api: Api<OAuthGrant> = Api::namespaced(kube.clone(), &state.config.operator_namespace);
    let name = grant_name(&token.grant_id);
    let mut grant = match api.get_opt(&name).await {
        Ok(Some(g)) => g,
        // Collected after its end, or never made.
        Ok(None) => return Err(fail(OAuthError::InvalidGrant)),
        Err(e) => {
            tracing::error!(error = %e, "reading a grant failed");
            return Err(fail(OAuthError::TemporarilyUnavailable));
        }
    };
    let spec = &grant.spec;
    let user = grant_user(state, &client, spec).ok_or_else(|| fail(OAuthError::InvalidGrant))?;
    let granted: Vec<String> = spec
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    // A refresh may narrow the scope, never widen it (RFC 6749 section 6).
    let scope = match requested {
        Some(req) if req.iter().all(|s| granted.contains(s)) => req,
        Some(_) => return Err(fail(OAuthError::InvalidScope)),
        None => granted,
    };
    // What the sign-in got is decided again: a resource's grant withdrawn since ends the
    // sign-in, with every token it issued (RFC 8707 section 2.2 lets a refresh narrow,
    // never widen).
    let targets = (!spec.resource.is_empty()).then_some(spec.resource.as_slice());
    let decision = match decide_for_user(state, &client, &user, targets, &scope) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(target: "audit", event = "refresh_refused", client_id = %client.client_id, grant_id = %token.grant_id, why = "the resource no longer grants it", reason = e.code());
            let until = spec.expires_at.0.as_second();
            crate::server::revoke::record(state, &token.grant_id, &client.client_id, until)
                .await
                .map_err(&fail)?;
            return Err(fail(OAuthError::InvalidGrant));
        }
    };
    let next = match judge(spec.refresh.as_ref(), token.generation, &policy, now) {
        Verdict::Refresh(next) => next,
        Verdict::Refuse(why) => {
            tracing::info!(target: "audit", event = "refresh_refused", client_id = %client.client_id, grant_id = %token.grant_id, why);
            return Err(fail(OAuthError::InvalidGrant));
        }
        Verdict::Reuse => return Err(fail(reused(state, &client, &token, &grant).await)),
    };
    let until = next.refresh_until.0.as_second();
    let generation = next.generation;
    grant.spec.refresh = Some(next);
    let auth_time = grant.spec.auth_time.0.as_second();
    match api.replace(&name, &PostParams::default(), &grant).await {
        Ok(_) => {}
        // Another refresh with this very token won the race.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(fail(reused(state, &client, &token, &grant).await));
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a refresh failed");
            return Err(fail(OAuthError::TemporarilyUnavailable));
        }
    }

    let now = now.as_second();
    let session = Session {
        grant_id: &token.grant_id,
        auth_time,
        scope: &scope,
        nonce: None,
        session_id: None,
        upstream: grant.spec.upstream.clone(),
    };
    let (access_token, id_token) =
        user_tokens(state, &keys, &client, &user, &session, &decision, now).map_err(&fail)?;
    let refresh_token = seal(
        sealer,
        &client,
        &token.grant_id,
        generation,
        now,
        until,
        &policy,
    )
    .map_err(&fail)?;
    tracing::info!(target: "audit", event = "token_refreshed", client_id = %client.client_id, username = %user.name, grant_id = %token.grant_id, generation);
    let res = Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: decision.lifetime,
        scope: (!scope.is_empty()).then(|| scope.join(" ")),
        id_token,
        refresh_token: Some(refresh_token),
    })
    .into_response();
    Ok((client.client_id.clone(), res))
}

/// A spent refresh token was presented: the grant is revoked (until its last token has
/// expired), and the request refused.
async fn reused(
    state: &AppState,
    client: &ClientEntry,
    token: &RefreshClaims,
    grant: &OAuthGrant,
) -> OAuthError {
    tracing::warn!(target: "audit", event = "refresh_token_reused", client_id = %client.client_id, grant_id = %token.grant_id, "a spent refresh token was used; the grant is revoked");
    let until = grant.spec.expires_at.0.as_second();
    match crate::server::revoke::record(state, &token.grant_id, &client.client_id, until).await {
        Ok(()) => OAuthError::InvalidGrant,
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).expect("time")
    }

    fn state(generation: u32, refreshes: u32) -> GrantRefresh {
        GrantRefresh {
            generation,
            refreshes,
            refresh_until: Time(at(1000)),
            last_refreshed_at: None,
        }
    }

    fn policy(count: Option<u32>) -> RefreshPolicy {
        RefreshPolicy {
            count,
            idle_lifetime_seconds: 100,
            max_lifetime_seconds: 1000,
        }
    }

    #[test]
    fn the_current_token_refreshes_and_moves_the_generation() {
        let v = judge(Some(&state(3, 3)), 3, &policy(None), at(10));
        assert_eq!(
            v,
            Verdict::Refresh(GrantRefresh {
                generation: 4,
                refreshes: 4,
                refresh_until: Time(at(1000)),
                last_refreshed_at: Some(Time(at(10))),
            })
        );
    }

    #[test]
    fn a_spent_token_is_a_reuse() {
        assert_eq!(
            judge(Some(&state(3, 3)), 2, &policy(None), at(10)),
            Verdict::Reuse
        );
        assert_eq!(
            judge(Some(&state(3, 3)), 0, &policy(None), at(10)),
            Verdict::Reuse
        );
    }

    #[test]
    fn the_count_is_exact() {
        assert!(matches!(
            judge(Some(&state(1, 1)), 1, &policy(Some(2)), at(10)),
            Verdict::Refresh(_)
        ));
        assert!(matches!(
            judge(Some(&state(2, 2)), 2, &policy(Some(2)), at(10)),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            judge(Some(&state(0, 0)), 0, &policy(Some(0)), at(10)),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn nothing_refreshes_past_the_maximum_lifetime_or_without_a_family() {
        assert!(matches!(
            judge(Some(&state(0, 0)), 0, &policy(None), at(1000)),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            judge(None, 0, &policy(None), at(10)),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            judge(Some(&state(0, 0)), 1, &policy(None), at(10)),
            Verdict::Refuse(_)
        ));
    }
}
