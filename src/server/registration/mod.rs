//! Dynamic client registration: `POST /register` with an initial access token (RFC 7591),
//! and the client configuration endpoint `GET | PUT | DELETE /register/{client_id}` with
//! the registration access token (RFC 7592).
//!
//! This is where the token server writes to the API server (with `/revoke`, the only
//! other place): a registration creates an `OAuthClient` and its Secret, and claims a slot
//! in the InitialAccessToken's status; the configuration endpoint patches or deletes the
//! client. A registered client is an ordinary `OAuthClient` in the token's namespace, so
//! `kubectl` and GitOps tools see it, and the controller turns it into a verifier that
//! reaches the index like any other. Its secret and registration access token are
//! returned once, in the response; the server keeps only their argon2id hashes.
//!
//! - [`metadata`]: the RFC 7591 client metadata and its validation (pure).
//! - [`slots`]: the slot protocol, the one place the server writes a token's status, and
//!   why a token's count is never exceeded.
//! - [`objects`]: the OAuthClient and Secret a registration creates (pure).
//! - [`handlers`]: the HTTP edge, authentication and the order of the writes.

mod handlers;
mod metadata;
mod objects;
mod slots;

pub(crate) use handlers::{delete, read, register, update};

use kube::api::PostParams;

use super::error::OAuthError;

/// Keys of the registration Secret.
const SECRET_HASH_KEY: &str = "client_secret.argon2id";
const ACCESS_TOKEN_HASH_KEY: &str = "registration_access_token.argon2id";
/// The auth method asked for at registration, to report it back (RFC 7592 read).
const AUTH_METHOD_ANNOTATION: &str = "oauth-operator.dev/token-endpoint-auth-method";
/// The field manager of every write the server makes here.
const FIELD_MANAGER: &str = "oauth-operator-server";
/// The name of the one secret entry of a registered confidential client.
/// Where a `private_key_jwt` client's public keys are kept in its registration Secret.
const JWKS_KEY: &str = "jwks.json";
const SECRET_ENTRY: &str = "registered";

/// Every create and replace of the server names it as the field manager.
fn post_params(dry_run: bool) -> PostParams {
    PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
    }
}

/// Logs an API failure and answers `server_error`: the caller learns nothing of the
/// cluster behind the server.
fn kube_error(what: &'static str) -> impl Fn(kube::Error) -> OAuthError {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        OAuthError::ServerError
    }
}
