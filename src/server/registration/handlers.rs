//! The HTTP edge of registration: the extractors of the client id in the path and the
//! JSON metadata (the bearer token's is [`Bearer`]), the handlers, and the order of the writes of a
//! registration (validate, claim a slot, create the client, then its Secret; undo on
//! failure). The pieces they call are pure ([`super::metadata`], [`super::objects`]) or
//! the slot protocol ([`super::slots`]).
//!
//! Every extractor's rejection is an [`OAuthError`], but the handlers take them as
//! `Result`s, so that a refusal is answered in the order the RFCs check (the token
//! before the body) and is written to the audit log like any other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::metadata::{AuthMethod, ClientMetadata, metadata_error, validate, within_policies};
use super::objects::{self, ClientInformation, RegistrationSecret, hex};
use super::slots::{claim, release, usable};
use super::{FIELD_MANAGER, kube_error, post_params};
use crate::api::{InitialAccessToken, OAuthClient};
use crate::auth::hash::Verifier;
use crate::auth::secret::{self, SecretString, split_token};
use crate::index::ClientEntry;
use crate::server::AppState;
use crate::server::client_auth::Bearer;
use crate::server::error::OAuthError;
use crate::server::form::has_media_type;

/// How long a registered client's secret is valid.
const SECRET_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);
/// How long a registration waits for its client to reach this replica's index, so that
/// the client works at `/token` as soon as it has the response.
const SERVED_WAIT: Duration = Duration::from_secs(10);

/// The `{client_id}` of the path. One that does not even decode (bad percent-encoding)
/// names no client: the same answer as a wrong token, not axum's plain-text rejection.
pub(crate) struct ClientIdPath(String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIdPath {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if !id.is_empty() => Ok(ClientIdPath(id)),
            _ => Err(OAuthError::InvalidToken),
        }
    }
}

/// The JSON body of client metadata: `application/json`, within the size limit, an
/// object (unknown fields ignored).
impl<S: Send + Sync> FromRequest<S> for ClientMetadata {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_media_type(req.headers(), "application/json") {
            return Err(metadata_error("the body must be application/json"));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| metadata_error("the body could not be read"))?;
        serde_json::from_slice(&body)
            .map_err(|_| metadata_error("the body is not a JSON object of client metadata"))
    }
}

type Extracted<T> = Result<T, OAuthError>;

/// Whether `value` matches `verifier`: a SHA-256 on the spot (every token here is
/// generated), an argon2id hash written by an earlier version on a blocking thread within
/// the server's bound on them. No verifier (an unknown token): no.
async fn check_hash(
    state: &AppState,
    value: &SecretString,
    verifier: Option<Verifier>,
) -> Result<bool, OAuthError> {
    match verifier {
        None => Ok(false),
        Some(v) if !v.is_slow() => Ok(v.matches(value.expose())),
        Some(v) => {
            let value = value.clone();
            state.hashing.run(move || v.matches(value.expose())).await
        }
    }
}

/// How a generated value is kept: its SHA-256, as text (see [`crate::auth::hash`]).
fn hash_value(value: &SecretString) -> String {
    Verifier::of_generated(value.expose()).to_text()
}

/// The response, and its audit line. `Cache-Control: no-store` comes from the route's
/// layer (see [`crate::server::router`]), errors carry their own.
fn answer(
    result: Result<(StatusCode, Option<ClientInformation>), OAuthError>,
    event: &'static str,
    peer: SocketAddr,
) -> Response {
    match result {
        Ok((status, info)) => {
            let client_id = info
                .as_ref()
                .map(|i| i.client_id.clone())
                .unwrap_or_default();
            tracing::info!(target: "audit", event, client_id, source = %peer.ip());
            match info {
                Some(info) => (status, Json(info)).into_response(),
                None => status.into_response(),
            }
        }
        Err(err) => {
            tracing::info!(target: "audit", event = "registration_refused", reason = err.code(), source = %peer.ip());
            err.into_response()
        }
    }
}

/// `POST /register`.
#[tracing::instrument(
    name = "register",
    skip_all,
    fields(client_id = tracing::field::Empty, source = %peer.ip())
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    token: Extracted<Bearer>,
    meta: Extracted<ClientMetadata>,
) -> Response {
    let result = handle_register(&state, token, meta)
        .await
        .map(|info| (StatusCode::CREATED, Some(info)));
    answer(result, "client_registered", peer)
}

async fn handle_register(
    state: &AppState,
    token: Extracted<Bearer>,
    meta: Extracted<ClientMetadata>,
) -> Result<ClientInformation, OAuthError> {
    let Bearer(presented) = token?;
    let (token_id, _) = split_token(presented.expose()).ok_or(OAuthError::InvalidToken)?;
    let entry = state.index.initial_access_token(token_id);
    let matched = check_hash(
        state,
        &presented,
        entry.as_ref().map(|e| e.verifier.clone()),
    )
    .await?;
    let entry = entry.filter(|_| matched).ok_or(OAuthError::InvalidToken)?;
    let now = Timestamp::now();
    if entry.expires_at <= now.as_second() {
        return Err(OAuthError::InvalidToken);
    }
    let meta = meta?;
    let kube = state.kube.clone().ok_or(OAuthError::ServerError)?;

    let tokens: Api<InitialAccessToken> = Api::namespaced(kube.clone(), &entry.namespace);
    let current = |iat: Option<InitialAccessToken>| {
        iat.filter(|i| i.metadata.uid == entry.owner_uid)
            .ok_or(OAuthError::InvalidToken)
    };
    let iat = current(
        tokens
            .get_opt(&entry.name)
            .await
            .map_err(kube_error("reading the initial access token"))?,
    )?;
    usable(&iat, now, entry.expires_at)?;
    let policy = iat.spec.policy.clone();
    let accepted = validate(meta, &policy.grant_types, &policy.scopes)?;
    within_policies(&entry.namespace, &entry.enforced_policies, &accepted)?;

    let client_id = format!(
        "dcr-{}",
        hex(&secret::random_bytes::<12>().map_err(|_| OAuthError::ServerError)?)
    );
    tracing::Span::current().record("client_id", client_id.as_str());
    let client_secret = match accepted.auth_method {
        AuthMethod::None | AuthMethod::PrivateKeyJwt => None,
        _ => Some(secret::generate_secret().map_err(|_| OAuthError::ServerError)?),
    };
    let access_token = secret::generate_secret().map_err(|_| OAuthError::ServerError)?;
    let secret_hash = client_secret.as_ref().map(hash_value);
    let access_token_hash = hash_value(&access_token);
    let secret_expires = now
        .checked_add(SECRET_VALIDITY)
        .map_err(|_| OAuthError::ServerError)?;
    let client = objects::build_client(&iat, &accepted, &client_id, &policy, secret_expires);

    // The API server's own validation (schema and CEL) before a slot is spent.
    let clients: Api<OAuthClient> = Api::namespaced(kube.clone(), &entry.namespace);
    clients
        .create(&post_params(true), &client)
        .await
        .map_err(rejected_metadata)?;

    claim(&tokens, &entry.name, entry.expires_at, &client_id, &current).await?;

    let params = post_params(false);
    let created = match clients.create(&params, &client).await {
        Ok(created) => created,
        Err(e) => {
            release(&tokens, &entry.name, &client_id).await;
            return Err(kube_error("creating a registered OAuthClient")(e));
        }
    };
    let registration_secret = objects::registration_secret(RegistrationSecret {
        namespace: &entry.namespace,
        initial_access_token: &entry.name,
        client_id: &client_id,
        access_token_hash,
        secret_hash,
        plaintext_secret: client_secret.as_ref(),
        jwks: accepted.jwks.clone(),
        write_secret: policy.write_secret,
        owner: created.controller_owner_ref(&()),
    });
    if let Err(e) = Api::<Secret>::namespaced(kube, &entry.namespace)
        .create(&params, &registration_secret)
        .await
    {
        // A client nobody holds the credentials of: take it back, and the slot with it.
        if let Err(e) = clients.delete(&client_id, &Default::default()).await {
            tracing::error!(error = %e, client_id, "deleting a half-registered OAuthClient failed");
        }
        release(&tokens, &entry.name, &client_id).await;
        return Err(kube_error("creating a registration Secret")(e));
    }
    tracing::info!(target: "audit", event = "registration", client_id, initial_access_token = %entry.name, namespace = %entry.namespace);

    let by_key = accepted.auth_method == AuthMethod::PrivateKeyJwt;
    wait_until_served(state, &client_id, client_secret.is_some(), by_key).await;
    let mut info = objects::information(&created, &state.config.issuer);
    info.jwks = accepted
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    info.client_secret = client_secret.map(|s| s.expose().to_string());
    info.registration_access_token = Some(access_token.expose().to_string());
    Ok(info)
}

/// An API server rejection of the client (its schema and CEL rules): a metadata error
/// that names the field.
fn rejected_metadata(e: kube::Error) -> OAuthError {
    match e {
        kube::Error::Api(s) if s.code == 422 => {
            if s.message.contains("redirectUris") {
                OAuthError::InvalidRedirectUri(s.message)
            } else {
                OAuthError::InvalidClientMetadata(s.message)
            }
        }
        other => kube_error("validating a registered OAuthClient")(other),
    }
}

/// Waits (bounded) until this replica serves the new client, so that it works at `/token`
/// as soon as the caller has the response. Other replicas learn it from the same watch
/// events at about the same moment.
async fn wait_until_served(state: &AppState, client_id: &str, with_secret: bool, by_key: bool) {
    let served = |e: &ClientEntry| {
        e.registration_access_token_hash.is_some()
            && (!with_secret || !e.secrets.is_empty())
            && (!by_key || e.keys.is_some())
    };
    let deadline = tokio::time::Instant::now() + SERVED_WAIT;
    while tokio::time::Instant::now() < deadline {
        if state.index.client(client_id).is_some_and(|e| served(&e)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tracing::warn!(
        client_id,
        "registered client not served yet; answering anyway, its secret is in this response only"
    );
}

/// The registered client a registration access token is for, read fresh from the API.
async fn authorized(
    state: &AppState,
    token: Extracted<Bearer>,
    client_id: &str,
) -> Result<(Api<OAuthClient>, OAuthClient), OAuthError> {
    let Bearer(presented) = token?;
    let entry: Option<Arc<ClientEntry>> = state.index.client(client_id);
    let verifier = entry
        .as_ref()
        .and_then(|e| e.registration_access_token_hash.clone());
    let matched = check_hash(state, &presented, verifier).await?;
    let entry = entry.filter(|_| matched).ok_or(OAuthError::InvalidToken)?;
    let kube = state.kube.clone().ok_or(OAuthError::ServerError)?;
    let api: Api<OAuthClient> = Api::namespaced(kube, &entry.namespace);
    let client = api
        .get_opt(&entry.name)
        .await
        .map_err(kube_error("reading a registered OAuthClient"))?
        .filter(|c| c.spec.registration.is_some())
        .ok_or(OAuthError::InvalidToken)?;
    Ok((api, client))
}

/// `GET /register/{client_id}`.
#[tracing::instrument(
    name = "registration_read",
    skip_all,
    fields(client_id = path.as_ref().map_or("-", |p| p.0.as_str()), source = %peer.ip())
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Extracted<ClientIdPath>,
    token: Extracted<Bearer>,
) -> Response {
    let result = async {
        let ClientIdPath(client_id) = path?;
        let (_, c) = authorized(&state, token, &client_id).await?;
        Ok((
            StatusCode::OK,
            Some(objects::information(&c, &state.config.issuer)),
        ))
    }
    .await;
    answer(result, "registration_read", peer)
}

/// `PUT /register/{client_id}`: replaces the metadata. Grant types and scopes may only
/// narrow (widening is what a new registration, under a token's policy, is for); the
/// authentication method cannot change.
#[tracing::instrument(
    name = "registration_update",
    skip_all,
    fields(client_id = path.as_ref().map_or("-", |p| p.0.as_str()), source = %peer.ip())
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Extracted<ClientIdPath>,
    token: Extracted<Bearer>,
    meta: Extracted<ClientMetadata>,
) -> Response {
    let result = async {
        let ClientIdPath(client_id) = path?;
        let info = handle_update(&state, token, &client_id, meta).await?;
        Ok((StatusCode::OK, Some(info)))
    }
    .await;
    answer(result, "registration_updated", peer)
}

async fn handle_update(
    state: &AppState,
    token: Extracted<Bearer>,
    client_id: &str,
    meta: Extracted<ClientMetadata>,
) -> Result<ClientInformation, OAuthError> {
    let (api, client) = authorized(state, token, client_id).await?;
    let meta = meta?;
    if meta.client_id.as_deref() != Some(client_id) {
        return Err(metadata_error("client_id must be the client's own"));
    }
    let current = objects::information(&client, &state.config.issuer);
    let asked = AuthMethod::parse(meta.token_endpoint_auth_method.as_deref());
    if asked.map(AuthMethod::as_str) != Some(current.token_endpoint_auth_method) {
        return Err(metadata_error("token_endpoint_auth_method cannot change"));
    }
    let accepted = validate(meta, &client.spec.grant_types, &client.spec.scopes)?;
    let patch = serde_json::json!({
        "spec": {
            "displayName": accepted.name,
            "grantTypes": accepted.grant_types,
            "scopes": accepted.scopes,
            "redirectUris": accepted.redirect_uris,
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let updated = api
        .patch(&client.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(rejected_metadata)?;
    Ok(objects::information(&updated, &state.config.issuer))
}

/// `DELETE /register/{client_id}`: deletes the OAuthClient (its Secrets and verifier go
/// with it); its tokens are refused within seconds.
#[tracing::instrument(
    name = "registration_delete",
    skip_all,
    fields(client_id = path.as_ref().map_or("-", |p| p.0.as_str()), source = %peer.ip())
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Extracted<ClientIdPath>,
    token: Extracted<Bearer>,
) -> Response {
    let client_id = path.as_ref().map(|p| p.0.clone()).unwrap_or_default();
    let result = async {
        let ClientIdPath(client_id) = path?;
        let (api, client) = authorized(&state, token, &client_id).await?;
        api.delete(&client.name_any(), &DeleteParams::default())
            .await
            .map_err(kube_error("deleting a registered OAuthClient"))?;
        Ok((StatusCode::NO_CONTENT, None))
    }
    .await;
    if result.is_ok() {
        tracing::info!(target: "audit", event = "registration_deleted", client_id, source = %peer.ip());
    }
    answer(result, "registration_deleted", peer)
}
