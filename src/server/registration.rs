//! Dynamic client registration: `POST /register` with an initial access token (RFC 7591),
//! and the client configuration endpoint `GET | PUT | DELETE /register/{client_id}` with
//! the registration access token (RFC 7592).
//!
//! A registered client is an ordinary `OAuthClient` in the token's namespace, labelled
//! with the token, so `kubectl` and GitOps tools see it. Its secret and registration
//! access token are returned once, in the response; the server keeps only their argon2id
//! hashes, in a Secret owned by the client that the controller reads like any other.
//!
//! The count is never exceeded, whatever the number of replicas: a registration first
//! appends itself to the token's `status.registeredClients` with a replace that carries
//! the resourceVersion it read. The API server accepts exactly one of several concurrent
//! replaces; the others get 409 Conflict, read again and retry, and once the list is full
//! they are refused. Only then is the client created, so no client exists uncounted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::OAuthError;
use crate::api::{
    ClientSecret, ClientType, GrantType, InitialAccessToken, MANAGED_BY, MANAGED_BY_LABEL,
    OAuthClient, OAuthClientSpec, REGISTERED_BY_LABEL, RegisteredClient, Registration,
    RegistrationPolicy, Scope, SecretKeyRef,
};
use crate::auth::hash;
use crate::auth::secret::{self, SecretString, split_token};
use crate::index::ClientEntry;

/// Keys of the registration Secret.
const SECRET_HASH_KEY: &str = "client_secret.argon2id";
const ACCESS_TOKEN_HASH_KEY: &str = "registration_access_token.argon2id";
/// The auth method asked for at registration, to report it back (RFC 7592 read).
const AUTH_METHOD_ANNOTATION: &str = "oauth-operator.dev/token-endpoint-auth-method";
const FIELD_MANAGER: &str = "oauth-operator-server";
/// The name of the one secret entry of a registered confidential client.
const SECRET_ENTRY: &str = "registered";
/// How long a registered client's secret is valid.
const SECRET_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);
/// Attempts at claiming a slot. Each conflict means another registration took one, so
/// with a count of at most 1,000 this only runs out under a flood; the caller then gets
/// `temporarily_unavailable` and nothing was created.
const CLAIM_ATTEMPTS: u32 = 100;
/// How long a registration waits for its client to reach this replica's index, so that
/// the client works at `/token` as soon as it has the response.
const SERVED_WAIT: Duration = Duration::from_secs(10);

/// RFC 7591 section 2 client metadata; what is not listed is ignored, as the RFC allows.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ClientMetadata {
    client_id: Option<String>,
    client_name: Option<String>,
    grant_types: Option<Vec<String>>,
    scope: Option<String>,
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
}

/// RFC 7591 section 3.2.1 / RFC 7592 section 3 response.
#[derive(Serialize)]
struct ClientInformation {
    client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_name: Option<String>,
    grant_types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    registration_access_token: Option<String>,
    registration_client_uri: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AuthMethod {
    Basic,
    Post,
    None,
}

impl AuthMethod {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("client_secret_basic") => Some(AuthMethod::Basic),
            Some("client_secret_post") => Some(AuthMethod::Post),
            Some("none") => Some(AuthMethod::None),
            Some(_) => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Basic => "client_secret_basic",
            AuthMethod::Post => "client_secret_post",
            AuthMethod::None => "none",
        }
    }
}

/// Metadata that passed validation.
#[derive(Debug, PartialEq)]
struct Accepted {
    name: Option<String>,
    grant_types: Vec<GrantType>,
    scopes: Vec<Scope>,
    redirect_uris: Vec<String>,
    auth_method: AuthMethod,
}

fn metadata_error(msg: &str) -> OAuthError {
    OAuthError::InvalidClientMetadata(msg.to_string())
}

/// Checks metadata against what may be granted: `allowed_grants` (empty: any supported)
/// and `allowed_scopes`.
fn validate(
    meta: ClientMetadata,
    allowed_grants: &[GrantType],
    allowed_scopes: &[Scope],
) -> Result<Accepted, OAuthError> {
    let auth_method = AuthMethod::parse(meta.token_endpoint_auth_method.as_deref()).ok_or_else(
        || metadata_error("token_endpoint_auth_method must be client_secret_basic, client_secret_post or none"),
    )?;
    // RFC 7591 section 2: without grant_types, the client uses authorization_code only.
    let names = meta
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    let mut grant_types = Vec::new();
    for n in &names {
        let g: GrantType = serde_json::from_value(serde_json::Value::String(n.clone()))
            .map_err(|_| metadata_error("grant_types: supported are client_credentials, authorization_code and refresh_token"))?;
        if !allowed_grants.is_empty() && !allowed_grants.contains(&g) {
            return Err(metadata_error(
                "grant_types: the initial access token does not allow this grant type",
            ));
        }
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    if grant_types.is_empty() {
        return Err(metadata_error("grant_types must not be empty"));
    }
    if auth_method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(metadata_error(
            "grant_types: client_credentials needs a confidential client, not token_endpoint_auth_method none",
        ));
    }
    let mut scopes: Vec<Scope> = Vec::new();
    for s in meta.scope.as_deref().unwrap_or_default().split_whitespace() {
        let Some(allowed) = allowed_scopes.iter().find(|a| *a == s) else {
            return Err(metadata_error(
                "scope: the initial access token does not allow this scope",
            ));
        };
        if !scopes.contains(allowed) {
            scopes.push(allowed.clone());
        }
    }
    let redirect_uris = meta.redirect_uris.unwrap_or_default();
    if redirect_uris.len() > 32 {
        return Err(OAuthError::InvalidRedirectUri(
            "at most 32 redirect_uris".into(),
        ));
    }
    for u in &redirect_uris {
        check_redirect_uri(u)?;
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(OAuthError::InvalidRedirectUri(
            "redirect_uris must list at least one URI for the authorization_code grant".into(),
        ));
    }
    if meta
        .client_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 200)
    {
        return Err(metadata_error("client_name is longer than 200 characters"));
    }
    Ok(Accepted {
        name: meta.client_name,
        grant_types,
        scopes,
        redirect_uris,
        auth_method,
    })
}

/// The same rules as the CRD's: absolute, no fragment, `https` except on loopback hosts.
fn check_redirect_uri(u: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| {
        Err(OAuthError::InvalidRedirectUri(format!(
            "redirect_uris: {why}"
        )))
    };
    if u.is_empty() || u.len() > 2048 {
        return bad("each URI must have 1 to 2048 characters");
    }
    if u.contains('#') {
        return bad("a redirect URI must not have a fragment (#)");
    }
    let Ok(uri) = u.parse::<axum::http::Uri>() else {
        return bad("each entry must be an absolute URI");
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return bad("each entry must be an absolute URI");
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => bad("a redirect URI must use https (http only for localhost, 127.0.0.1 and [::1])"),
    }
}

/// The bearer token of the request (RFC 6750 section 2.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn parse_metadata(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ClientMetadata, OAuthError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(metadata_error("the body must be application/json"));
    }
    let body = body.map_err(|_| metadata_error("the body could not be read"))?;
    serde_json::from_slice(&body)
        .map_err(|_| metadata_error("the body is not a JSON object of client metadata"))
}

/// Runs an argon2 check on a blocking thread, within the server's bound on them.
async fn check_hash(
    state: &AppState,
    value: &str,
    phc: Option<String>,
) -> Result<bool, OAuthError> {
    let value = SecretString::new(value.to_string());
    state
        .hashing
        .run(move || match phc {
            Some(phc) => hash::verify(value.expose(), &phc),
            // Unknown token: the same work as a wrong one, so the two look alike.
            None => hash::verify_decoy(value.expose()),
        })
        .await
}

async fn hash_value(state: &AppState, value: &SecretString) -> Result<String, OAuthError> {
    let value = value.clone();
    state
        .hashing
        .run(move || hash::hash(value.expose()))
        .await?
        .map_err(|_| OAuthError::ServerError)
}

fn kube_error(what: &'static str) -> impl Fn(kube::Error) -> OAuthError {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        OAuthError::ServerError
    }
}

fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

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
                Some(info) => no_store((status, Json(info)).into_response()),
                None => no_store(status.into_response()),
            }
        }
        Err(err) => {
            tracing::info!(target: "audit", event = "registration_refused", reason = err.code(), source = %peer.ip());
            err.into_response()
        }
    }
}

/// `POST /register`.
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = handle_register(&state, &headers, body)
        .await
        .map(|info| (StatusCode::CREATED, Some(info)));
    answer(result, "client_registered", peer)
}

async fn handle_register(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ClientInformation, OAuthError> {
    let presented = bearer(headers).ok_or(OAuthError::InvalidToken)?;
    let (token_id, _) = split_token(presented).ok_or(OAuthError::InvalidToken)?;
    let entry = state.index.initial_access_token(token_id);
    let matched = check_hash(state, presented, entry.as_ref().map(|e| e.hash.clone())).await?;
    let entry = entry.filter(|_| matched).ok_or(OAuthError::InvalidToken)?;
    let now = Timestamp::now();
    if entry.expires_at <= now.as_second() {
        return Err(OAuthError::InvalidToken);
    }
    let meta = parse_metadata(headers, body)?;
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

    let client_id = format!(
        "dcr-{}",
        hex(&secret::random_bytes::<12>().map_err(|_| OAuthError::ServerError)?)
    );
    let client_secret = match accepted.auth_method {
        AuthMethod::None => None,
        _ => Some(secret::generate_secret().map_err(|_| OAuthError::ServerError)?),
    };
    let access_token = secret::generate_secret().map_err(|_| OAuthError::ServerError)?;
    let secret_hash = match &client_secret {
        Some(s) => Some(hash_value(state, s).await?),
        None => None,
    };
    let access_token_hash = hash_value(state, &access_token).await?;
    let secret_expires = now
        .checked_add(SECRET_VALIDITY)
        .map_err(|_| OAuthError::ServerError)?;
    let client = build_client(&iat, &accepted, &client_id, &policy, secret_expires);

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
    let mut data = std::collections::BTreeMap::new();
    data.insert(ACCESS_TOKEN_HASH_KEY.to_string(), access_token_hash);
    if let Some(h) = secret_hash {
        data.insert(SECRET_HASH_KEY.to_string(), h);
    }
    if policy.write_secret {
        data.insert("client_id".into(), client_id.clone());
        if let Some(s) = &client_secret {
            data.insert("client_secret".into(), s.expose().to_string());
        }
    }
    let registration_secret = Secret {
        metadata: ObjectMeta {
            name: Some(registration_secret_name(&client_id)),
            namespace: Some(entry.namespace.clone()),
            labels: Some(std::collections::BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (REGISTERED_BY_LABEL.to_string(), entry.name.clone()),
            ])),
            owner_references: created.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Secret::default()
    };
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

    wait_until_served(state, &client_id, client_secret.is_some()).await;
    let mut info = information(&created, &state.config.issuer);
    info.client_secret = client_secret.map(|s| s.expose().to_string());
    info.registration_access_token = Some(access_token.expose().to_string());
    Ok(info)
}

fn registration_secret_name(client_id: &str) -> String {
    format!("{client_id}-registration")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses an expired or exhausted token. `expires_at` is the verifier's; the status's,
/// when the controller has written it, is the same or newer.
fn usable(iat: &InitialAccessToken, now: Timestamp, expires_at: i64) -> Result<(), OAuthError> {
    let status_expiry = iat
        .status
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
        .map_or(i64::MAX, |t| t.0.as_second());
    let expired = expires_at.min(status_expiry) <= now.as_second();
    if expired || iat.registered() >= iat.spec.count {
        return Err(OAuthError::InvalidToken);
    }
    Ok(())
}

/// Appends the client to the token's `status.registeredClients`, with the resourceVersion
/// read: a concurrent registration makes the replace fail with 409, and this one reads
/// again and retries, until it has its slot or the token is exhausted.
async fn claim(
    tokens: &Api<InitialAccessToken>,
    name: &str,
    expires_at: i64,
    client_id: &str,
    current: &impl Fn(Option<InitialAccessToken>) -> Result<InitialAccessToken, OAuthError>,
) -> Result<(), OAuthError> {
    for attempt in 0..CLAIM_ATTEMPTS {
        let mut iat = current(
            tokens
                .get_opt(name)
                .await
                .map_err(kube_error("reading the initial access token"))?,
        )?;
        let now = Timestamp::now();
        usable(&iat, now, expires_at)?;
        iat.status
            .get_or_insert_default()
            .registered_clients
            .push(RegisteredClient {
                name: client_id.to_string(),
                client_id: client_id.to_string(),
                registered_at: Time(now),
            });
        match write_slots(tokens, iat).await {
            Ok(()) => return Ok(()),
            // Someone else took a slot (or the controller wrote status).
            Err(kube::Error::Api(s)) if s.code == 409 => conflict_backoff(attempt).await,
            Err(e) => return Err(kube_error("claiming a registration")(e)),
        }
    }
    Err(OAuthError::TemporarilyUnavailable)
}

/// Gives back the slot [`claim`] took when the client could not be created after all, so
/// an API server failure does not cost the holder a registration. Best effort, with the
/// same resourceVersion discipline: if this fails too, the slot stays spent, which errs on
/// the side of the count. The token is matched by name only: a slot listed under this
/// client id can only be the one this request claimed (client ids are random).
async fn release(tokens: &Api<InitialAccessToken>, name: &str, client_id: &str) {
    for attempt in 0..CLAIM_ATTEMPTS {
        let mut iat = match tokens.get_opt(name).await {
            Ok(Some(iat)) => iat,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, client_id, "releasing a registration slot failed");
                return;
            }
        };
        let Some(status) = iat.status.as_mut() else {
            return;
        };
        let before = status.registered_clients.len();
        status
            .registered_clients
            .retain(|c| c.client_id != client_id);
        if status.registered_clients.len() == before {
            return;
        }
        match write_slots(tokens, iat).await {
            Ok(()) => {
                tracing::info!(target: "audit", event = "registration_slot_released", client_id, initial_access_token = %name);
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => conflict_backoff(attempt).await,
            Err(e) => {
                tracing::error!(error = %e, client_id, "releasing a registration slot failed");
                return;
            }
        }
    }
}

/// Writes back the token's list of registered clients, with `remaining` to match, on the
/// condition that nobody wrote since it was read (its resourceVersion; 409 otherwise).
async fn write_slots(
    tokens: &Api<InitialAccessToken>,
    mut iat: InitialAccessToken,
) -> Result<(), kube::Error> {
    let name = iat.name_any();
    let count = iat.spec.count;
    let status = iat.status.get_or_insert_default();
    let used = u32::try_from(status.registered_clients.len()).unwrap_or(u32::MAX);
    status.remaining = Some(count.saturating_sub(used));
    tokens
        .replace_status(&name, &post_params(false), &iat)
        .await
        .map(|_| ())
}

/// Every create and replace of the server names it as the field manager.
fn post_params(dry_run: bool) -> PostParams {
    PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
    }
}

/// After losing a resourceVersion race, waits a random few milliseconds, growing with the
/// attempt, so that the losers do not collide again in step.
async fn conflict_backoff(attempt: u32) {
    let jitter = secret::random_bytes::<1>().map_or(0, |b| u64::from(b[0]));
    let base = 5 * u64::from(attempt.min(10) + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter % (base * 2))).await;
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

fn build_client(
    iat: &InitialAccessToken,
    accepted: &Accepted,
    client_id: &str,
    policy: &RegistrationPolicy,
    secret_expires: Timestamp,
) -> OAuthClient {
    let secret_name = registration_secret_name(client_id);
    let public = accepted.auth_method == AuthMethod::None;
    let secrets = if public {
        Vec::new()
    } else {
        vec![ClientSecret {
            name: SECRET_ENTRY.into(),
            description: Some("Issued at registration (RFC 7591)".into()),
            expires_after: None,
            expires_at: Some(Time(secret_expires)),
            never_expires: None,
            secret_key_ref: None,
            hash_ref: Some(SecretKeyRef {
                name: secret_name.clone(),
                key: SECRET_HASH_KEY.into(),
            }),
        }]
    };
    let mut client = OAuthClient::new(
        client_id,
        OAuthClientSpec {
            display_name: accepted.name.clone(),
            description: None,
            version: None,
            client_id: Some(client_id.to_string()),
            client_type: if public {
                ClientType::Public
            } else {
                ClientType::Confidential
            },
            active: true,
            grant_types: accepted.grant_types.clone(),
            redirect_uris: accepted.redirect_uris.clone(),
            scopes: accepted.scopes.clone(),
            audiences: policy.audiences.clone(),
            roles: Vec::new(),
            access_token_lifetime_seconds: policy.max_access_token_lifetime_seconds.unwrap_or(3600),
            secrets,
            credentials_secret: None,
            registration: Some(Registration {
                initial_access_token: iat.name_any(),
                access_token_hash_ref: SecretKeyRef {
                    name: secret_name,
                    key: ACCESS_TOKEN_HASH_KEY.into(),
                },
            }),
        },
    );
    client.metadata.namespace = iat.namespace();
    client.metadata.labels = Some(std::collections::BTreeMap::from([(
        REGISTERED_BY_LABEL.to_string(),
        iat.name_any(),
    )]));
    client.metadata.annotations = Some(std::collections::BTreeMap::from([(
        AUTH_METHOD_ANNOTATION.to_string(),
        accepted.auth_method.as_str().to_string(),
    )]));
    client
}

/// Waits (bounded) until this replica serves the new client, so that it works at `/token`
/// as soon as the caller has the response. Other replicas learn it from the same watch
/// events at about the same moment.
async fn wait_until_served(state: &AppState, client_id: &str, confidential: bool) {
    let served = |e: &ClientEntry| {
        e.registration_access_token_hash.is_some() && (!confidential || !e.secrets.is_empty())
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

/// RFC 7592 client information, without the secret and the access token (only hashes
/// are kept).
fn information(client: &OAuthClient, issuer: &str) -> ClientInformation {
    let client_id = client.effective_client_id().unwrap_or_default();
    let auth_method = client
        .annotations()
        .get(AUTH_METHOD_ANNOTATION)
        .and_then(|m| AuthMethod::parse(Some(m)))
        .unwrap_or(match client.spec.client_type {
            ClientType::Public => AuthMethod::None,
            ClientType::Confidential => AuthMethod::Basic,
        });
    ClientInformation {
        client_secret: None,
        client_id_issued_at: client
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        client_secret_expires_at: client
            .spec
            .secrets
            .iter()
            .find(|s| s.name == SECRET_ENTRY)
            .map(|s| s.expires_at.as_ref().map_or(0, |t| t.0.as_second())),
        client_name: client.spec.display_name.clone(),
        grant_types: client.spec.grant_types.iter().map(|g| g.as_str()).collect(),
        scope: (!client.spec.scopes.is_empty()).then(|| client.spec.scopes.join(" ")),
        redirect_uris: client.spec.redirect_uris.clone(),
        token_endpoint_auth_method: auth_method.as_str(),
        registration_access_token: None,
        registration_client_uri: format!("{}/register/{client_id}", issuer.trim_end_matches('/')),
        client_id,
    }
}

/// The registered client a registration access token is for, read fresh from the API.
async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
) -> Result<(Api<OAuthClient>, OAuthClient), OAuthError> {
    let presented = bearer(headers).ok_or(OAuthError::InvalidToken)?;
    let entry: Option<Arc<ClientEntry>> = state.index.client(client_id);
    let phc = entry
        .as_ref()
        .and_then(|e| e.registration_access_token_hash.clone());
    let matched = check_hash(state, presented, phc).await?;
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

/// The `{client_id}` of the path. One that does not even decode (bad percent-encoding)
/// names no client: the same answer as a wrong token, not axum's plain-text rejection.
fn client_id(path: Result<Path<String>, PathRejection>) -> Result<String, OAuthError> {
    path.map(|Path(id)| id)
        .map_err(|_| OAuthError::InvalidToken)
}

/// `GET /register/{client_id}`.
pub async fn read(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let client_id = client_id(path)?;
        let (_, c) = authorized(&state, &headers, &client_id).await?;
        Ok((StatusCode::OK, Some(information(&c, &state.config.issuer))))
    }
    .await;
    answer(result, "registration_read", peer)
}

/// `PUT /register/{client_id}`: replaces the metadata. Grant types and scopes may only
/// narrow (widening is what a new registration, under a token's policy, is for); the
/// authentication method cannot change.
pub async fn update(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let client_id = client_id(path)?;
        let info = handle_update(&state, &headers, &client_id, body).await?;
        Ok((StatusCode::OK, Some(info)))
    }
    .await;
    answer(result, "registration_updated", peer)
}

async fn handle_update(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<ClientInformation, OAuthError> {
    let (api, client) = authorized(state, headers, client_id).await?;
    let meta = parse_metadata(headers, body)?;
    if meta.client_id.as_deref() != Some(client_id) {
        return Err(metadata_error("client_id must be the client's own"));
    }
    let current = information(&client, &state.config.issuer);
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
    Ok(information(&updated, &state.config.issuer))
}

/// `DELETE /register/{client_id}`: deletes the OAuthClient (its Secrets and verifier go
/// with it); its tokens are refused within seconds.
pub async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let client_id = client_id(path).unwrap_or_default();
    let result = async {
        if client_id.is_empty() {
            return Err(OAuthError::InvalidToken);
        }
        let (api, client) = authorized(&state, &headers, &client_id).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: serde_json::Value) -> ClientMetadata {
        serde_json::from_value(json).expect("metadata")
    }

    #[test]
    fn metadata_is_checked_against_the_policy() {
        let grants = [GrantType::ClientCredentials];
        let scopes = [
            Scope::parse("read").expect("scope"),
            Scope::parse("write").expect("scope"),
        ];
        let ok = validate(
            meta(serde_json::json!({"grant_types": ["client_credentials"], "scope": "read read", "client_name": "x"})),
            &grants,
            &scopes,
        )
        .expect("valid");
        assert_eq!(ok.scopes, vec!["read".to_string()]);
        assert_eq!(ok.auth_method, AuthMethod::Basic);

        let code = |json| {
            validate(meta(json), &grants, &scopes)
                .map(|_| ())
                .expect_err("refused")
                .code()
        };
        assert_eq!(
            code(serde_json::json!({})),
            "invalid_client_metadata",
            "default authorization_code is not allowed"
        );
        assert_eq!(
            code(serde_json::json!({"grant_types": ["password"]})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(serde_json::json!({"grant_types": ["client_credentials"], "scope": "admin"})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"})
            ),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"})
            ),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "redirect_uris": ["http://example.com/cb"]})
            ),
            "invalid_redirect_uri"
        );
        let any = validate(meta(serde_json::json!({"redirect_uris": []})), &[], &scopes);
        assert_eq!(
            any.map(|_| ()).expect_err("refused").code(),
            "invalid_redirect_uri",
            "authorization_code needs a redirect URI"
        );
    }

    #[test]
    fn redirect_uris_follow_the_crd_rules() {
        assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:8080/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1/cb").is_ok());
        assert!(check_redirect_uri("http://example.com/cb").is_err());
        assert!(check_redirect_uri("https://app.example.com/cb#frag").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("").is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def"),
        );
        assert_eq!(bearer(&h), Some("abc.def"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
