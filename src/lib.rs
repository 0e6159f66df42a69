//! An operator that manages OAuth 2.0 clients as Kubernetes custom resources, and the
//! token server that issues them access tokens.
//!
//! Three flows, each one way:
//!
//! ```text
//! (1) read: API server --watch--> index --> token server      (every replica; no API call per request)
//!     OAuthClientVerifier, InitialAccessTokenVerifier,         POST /token /introspect /revoke /register
//!     RevokedToken, OAuthUser, OAuthUpstream,                   GET /authorize /userinfo /logout /jwks,
//!     signing-key Secret, upstream Secret                       discovery
//! (2) write: OAuthClient, InitialAccessToken --watch--> controller::reconcile   (the Lease holder)
//!     observe --> plan (pure) --> act: Secret (each value once), verifier (hashes), status, Events
//! (3) the server's own writes, through the API server, back to (1) and (2) by the same watches:
//!     POST /register --> OAuthClient + Secret of hashes + a slot in the token's status
//!     POST /revoke, /logout, a code or refresh token reused --> RevokedToken
//!     POST /token (a code redeemed, a refresh) --> OAuthGrant
//! ```
//!
//! Modules, by role:
//! - [`api`]: the CRD types, no I/O.
//! - [`controller`]: reconcilers (observe, plan, act) that write Secrets, verifiers and
//!   status; leader election; signing-key rotation.
//! - [`index`]: the in-memory view of verifiers, users, upstream providers and signing
//!   keys the server reads.
//! - [`server`]: the HTTP surface (axum), answering from the index: the grants, the
//!   sign-in pages, upstream federation; the server's own writes are registrations,
//!   grants and revocations, through the API server.
//! - [`tenancy`]: who may have a token for which API (`OAuthResource` claims and grants):
//!   the one pure decision every grant makes.
//! - [`auth`]: secrets, hashing and signing; pure crypto, no HTTP, no Kubernetes.
//! - [`kube_client`]: the API client every component uses, rate-limited client-side.
//! - [`outgoing`]: the bounds of every HTTP request the components make themselves.
//! - [`watch_backoff`]: how every watch retries while the API server is away.

pub mod api;
pub mod auth;
pub mod controller;
pub mod index;
pub mod kube_client;
pub mod outgoing;
pub mod server;
pub mod telemetry;
pub mod tenancy;
pub mod watch_backoff;
