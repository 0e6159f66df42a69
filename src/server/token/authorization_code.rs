//! `grant_type=authorization_code` (RFC 6749 section 4.1.3): a sealed code from
//! `/authorize` exchanged for an access token, with `openid` an ID token, and, when the
//! client has a refresh count, the first refresh token of the grant.
//!
//! The code is checked entirely from what it holds (client, redirect URI, PKCE
//! challenge, user, expiry) before anything is written. Single use, on every replica,
//! is the API server's: redeeming creates the code's `OAuthGrant`, and only one create
//! of a name succeeds. A second redemption therefore fails, and it revokes the grant
//! (a `RevokedToken` of the grant id), ending the tokens the first one got, as RFC 6749
//! section 4.1.2 asks: whoever holds a copy of the code is not told which use was first.

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, PostParams};

use super::{Refusal, TokenResponse, authenticate, refresh_token};
use crate::api::{GrantRefresh, OAuthGrant, OAuthGrantSpec};
use crate::auth::keys::KeySet;
use crate::auth::pkce::Challenge;
use crate::auth::seal::Purpose;
use crate::auth::token::{self, AccessTokenClaims, IdTokenClaims, UpstreamUser};
use crate::index::{ClientEntry, UserEntry};
use crate::server::AppState;
use crate::server::authorize::{Code, visible_groups};
use crate::server::client_auth::{self, BasicHeader};
use crate::server::error::OAuthError;
use crate::server::form::Form;
use crate::server::target;
use crate::tenancy::{Decision, Flow};

pub(super) async fn exchange(
    state: &AppState,
    basic: BasicHeader,
    form: &Form,
) -> Result<(String, Response), Refusal> {
    let anon = |e| (None, e);
    let sealed = form
        .get("code")
        .ok_or_else(|| anon(OAuthError::InvalidRequest("code is missing")))?;
    let redirect_uri = form
        .get("redirect_uri")
        .ok_or_else(|| anon(OAuthError::InvalidRequest("redirect_uri is missing")))?;
    let verifier = form.get("code_verifier").ok_or_else(|| {
        anon(OAuthError::InvalidRequest(
            "code_verifier is missing (PKCE)",
        ))
    })?;
    let client = client(state, basic, form).await?;
    let id = Some(client.client_id.clone());
    let fail = |e| (id.clone(), e);
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(fail(OAuthError::UnauthorizedClient));
    }
    let keys = state
        .index
        .keys()
        .ok_or_else(|| fail(OAuthError::TemporarilyUnavailable))?;
    let sealer = keys
        .sealer
        .as_ref()
        .ok_or_else(|| fail(OAuthError::TemporarilyUnavailable))?;
    let now = jiff::Timestamp::now().as_second();
    let code: Code = sealer
        .open(Purpose::Code, sealed, now)
        .ok_or_else(|| fail(OAuthError::InvalidGrant))?;
    let user = redeemable(state, &client, &code, redirect_uri, verifier)
        .ok_or_else(|| fail(OAuthError::InvalidGrant))?;
    // Decided again: a grant withdrawn since `/authorize` is not honoured.
    let decision = decide_for_user(state, &client, &user, code.resource.as_deref(), &code.scope)
        .map_err(&fail)?;

    let lifetime = i64::from(decision.lifetime);
    let scope = (!code.scope.is_empty()).then(|| code.scope.join(" "));
    // With refresh tokens the grant lives as long as its last refresh allows.
    let refresh = client.refresh.as_ref().map(|p| GrantRefresh {
        generation: 0,
        refreshes: 0,
        refresh_until: Time(
            jiff::Timestamp::from_second(now + p.max_lifetime_seconds).unwrap_or_default(),
        ),
        last_refreshed_at: None,
    });
    let grant_end = client
        .refresh
        .as_ref()
        .map_or(now, |p| now + p.max_lifetime_seconds)
        + lifetime;
    redeem(state, &client, &code, scope.clone(), grant_end, refresh)
        .await
        .map_err(&fail)?;

    let session = Session {
        grant_id: &code.grant_id,
        auth_time: code.auth_time,
        scope: &code.scope,
        nonce: code.nonce.as_deref(),
        session_id: code.session_id.as_deref(),
        upstream: code.upstream.clone(),
    };
    let (access_token, id_token) =
        user_tokens(state, &keys, &client, &user, &session, &decision, now).map_err(&fail)?;
    let refresh_token = match &client.refresh {
        Some(policy) => Some(
            refresh_token::seal(
                sealer,
                &client,
                &code.grant_id,
                0,
                now,
                now + policy.max_lifetime_seconds,
                policy,
            )
            .map_err(&fail)?,
        ),
        None => None,
    };
    tracing::info!(target: "audit", event = "code_redeemed", client_id = %client.client_id, username = %user.name, grant_id = %code.grant_id);
    let res = Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: decision.lifetime,
        scope,
        id_token,
        refresh_token,
    })
    .into_response();
    Ok((client.client_id.clone(), res))
}

/// One sign-in as the tokens issued from it see it.
pub(super) struct Session<'a> {
    pub grant_id: &'a str,
    pub auth_time: i64,
    pub scope: &'a [String],
    /// The authorization request's, for the first ID token only.
    pub nonce: Option<&'a str>,
    /// The sign-in session (`sid`), for the first ID token only.
    pub session_id: Option<&'a str>,
    /// For a user of an upstream provider: what their tokens carry of them.
    pub upstream: Option<UpstreamUser>,
}

/// The decision ([`crate::tenancy`]) for a token of `user` through `client`: the
/// targets the sign-in named, its scope, and the roles the user's groups (those the
/// client may see) give.
pub(super) fn decide_for_user(
    state: &AppState,
    client: &ClientEntry,
    user: &UserEntry,
    targets: Option<&[String]>,
    scope: &[String],
) -> Result<Decision, OAuthError> {
    let groups = visible_groups(user, client);
    let decision = target::decide(
        state,
        client,
        targets,
        Some(scope),
        Flow::User {
            groups: &groups,
            identity_scopes: &target::IDENTITY_SCOPES,
        },
    )?;
    target::report(state, client, &decision);
    Ok(decision)
}

/// The access token of `user` for `client` as `decision` says (audience, roles,
/// lifetime), and with `openid` its ID token.
pub(super) fn user_tokens(
    state: &AppState,
    keys: &KeySet,
    client: &ClientEntry,
    user: &UserEntry,
    session: &Session<'_>,
    decision: &Decision,
    now: i64,
) -> Result<(String, Option<String>), OAuthError> {
    let lifetime = i64::from(decision.lifetime);
    let roles = decision.roles.clone();
    let claims = AccessTokenClaims {
        iss: state.config.issuer.clone(),
        sub: user.uid.clone(),
        aud: decision.audiences.clone(),
        exp: now + lifetime,
        iat: now,
        jti: crate::auth::secret::random_id().map_err(|_| OAuthError::ServerError)?,
        client_id: client.client_id.clone(),
        scope: (!session.scope.is_empty()).then(|| session.scope.join(" ")),
        roles,
        client_uid: client.uid.clone(),
        grant_id: Some(session.grant_id.to_string()),
        auth_time: Some(session.auth_time),
        upstream: session.upstream.clone(),
        client_auth_method: None,
    };
    let signer = keys.signer(now);
    let signing_failed = |e: token::SignError| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::ServerError
    };
    let access_token = token::sign(&claims, signer).map_err(signing_failed)?;
    let id_token = if session.scope.iter().any(|s| s == "openid") {
        let claims = id_token_claims(state, client, user, session, now, lifetime);
        Some(token::sign_id_token(&claims, signer).map_err(signing_failed)?)
    } else {
        None
    };
    Ok((access_token, id_token))
}

/// The client of the request: a confidential one by its secret, a public one by its
/// `client_id` alone (RFC 6749 section 3.2.1), whose proof is the PKCE verifier.
pub(super) async fn client(
    state: &AppState,
    basic: BasicHeader,
    form: &Form,
) -> Result<Arc<ClientEntry>, Refusal> {
    if client_auth::has_credentials(&basic, form) {
        let presented = client_auth::presented(basic, form).map_err(|e| (None, e))?;
        tracing::Span::current().record("client_id", presented.client_id());
        let id = Some(presented.client_id().to_string());
        return authenticate(state, presented)
            .await
            .map(|(client, _)| client)
            .map_err(|e| (id, e));
    }
    let id = form
        .get("client_id")
        .ok_or((None, OAuthError::InvalidClient { basic: true }))?;
    tracing::Span::current().record("client_id", id);
    match state.index.client(id) {
        Some(c) if c.public => Ok(c),
        // A confidential client must authenticate.
        _ => Err((
            Some(id.to_string()),
            OAuthError::InvalidClient { basic: false },
        )),
    }
}

/// The user the code was issued for, if the code may be redeemed by this request: the
/// same client (not another of the same id since), the same redirect URI, the verifier
/// of its challenge, and a user still there and enabled (or, for an upstream user, their
/// provider still there). One answer for every failure:
/// `invalid_grant`.
fn redeemable(
    state: &AppState,
    client: &ClientEntry,
    code: &Code,
    redirect_uri: &str,
    verifier: &str,
) -> Option<Arc<UserEntry>> {
    let same_client = code.client_id == client.client_id && code.client_uid == client.uid;
    let pkce = Challenge::parse(Some(&code.challenge), Some("S256"))
        .and_then(|c| c.verify(verifier))
        .is_ok();
    if !(same_client && client.active && code.redirect_uri == redirect_uri && pkce) {
        return None;
    }
    crate::server::upstream::user(state, &code.subject, code.upstream.as_ref())
        .filter(|u| u.name == code.username)
}

/// Creates the code's grant; if it exists already, the code was used before: the grant
/// is revoked and the request refused.
async fn redeem(
    state: &AppState,
    client: &ClientEntry,
    code: &Code,
    scope: Option<String>,
    expires_at: i64,
    refresh: Option<GrantRefresh>,
) -> Result<(), OAuthError> {
    let Some(kube) = &state.kube else {
        return Err(OAuthError::TemporarilyUnavailable);
    };
    let time = |t: i64| {
        jiff::Timestamp::from_second(t)
            .map(Time)
            .map_err(|_| OAuthError::ServerError)
    };
    let grant = OAuthGrant {
        metadata: ObjectMeta {
            name: Some(grant_name(&code.grant_id)),
            namespace: Some(state.config.operator_namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: OAuthGrantSpec {
            client_id: client.client_id.clone(),
            client_uid: client.uid.clone(),
            subject: code.subject.clone(),
            username: code.username.clone(),
            scope,
            resource: code.resource.clone().unwrap_or_default(),
            auth_time: time(code.auth_time)?,
            expires_at: time(expires_at)?,
            refresh,
            upstream: code.upstream.clone(),
        },
    };
    let api: Api<OAuthGrant> = Api::namespaced(kube.clone(), &state.config.operator_namespace);
    match api.create(&PostParams::default(), &grant).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::warn!(target: "audit", event = "code_reused", client_id = %client.client_id, grant_id = %code.grant_id, "an authorization code was used twice; its grant is revoked");
            // Long enough for every token of the grant.
            super::super::revoke::record(state, &code.grant_id, &client.client_id, expires_at)
                .await?;
            Err(OAuthError::InvalidGrant)
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a grant failed");
            Err(OAuthError::TemporarilyUnavailable)
        }
    }
}

/// The object name of a grant: its id is base64url, which object names cannot hold.
pub fn grant_name(grant_id: &str) -> String {
    let hex: String = grant_id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("grant-{hex}")
}

fn id_token_claims(
    state: &AppState,
    client: &ClientEntry,
    user: &UserEntry,
    session: &Session<'_>,
    now: i64,
    lifetime: i64,
) -> IdTokenClaims {
    let has = |s: &str| session.scope.iter().any(|g| g == s);
    IdTokenClaims {
        iss: state.config.issuer.clone(),
        sub: user.uid.clone(),
        aud: client.client_id.clone(),
        azp: client.client_id.clone(),
        exp: now + lifetime,
        iat: now,
        auth_time: session.auth_time,
        nonce: session.nonce.map(str::to_string),
        name: has("profile").then(|| user.display_name.clone()).flatten(),
        preferred_username: has("profile").then(|| user.name.clone()),
        email: has("email").then(|| user.email.clone()).flatten(),
        groups: has("groups").then(|| visible_groups(user, client)),
        sid: session.session_id.map(str::to_string),
    }
}
