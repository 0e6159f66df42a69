//! An operator that manages OAuth 2.0 clients as Kubernetes custom resources, and the
//! token server that issues them access tokens.
//!
//! ```text
//! write path (controller)                      read path (token server, every replica)
//! OAuthClient --watch--> controller            OAuthClientVerifier --watch--> index --> POST /token
//!    |-- Secret: client id + secret (create if absent, owned)        (argon2id check, JWT signing)
//!    |-- OAuthClientVerifier: argon2id hashes (owned)
//!    '-- status: clientId, Ready, observedGeneration
//! InitialAccessToken --watch--> controller     InitialAccessTokenVerifier --watch--> index --> POST /register
//! signing-key Secret (rotated) --watch--> keys --> JWT signing, GET /jwks
//! ```
//!
//! Modules, by role:
//! - [`api`]: the CRD types, no I/O.
//! - [`controller`]: reconcilers that write Secrets, verifiers and status.
//! - [`index`]: the in-memory view of verifiers and signing keys the server reads.
//! - [`server`]: the HTTP surface (axum), answering from the index; the server's own
//!   writes are registrations and revocations, through the API server.
//! - [`auth`]: secrets, hashing and signing; pure crypto, no HTTP, no Kubernetes.
//! - [`watch_backoff`]: how every watch retries while the API server is away.

pub mod api;
pub mod auth;
pub mod controller;
pub mod index;
pub mod server;
pub mod telemetry;
pub mod watch_backoff;
