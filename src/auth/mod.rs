//! Secrets, hashing and signing: pure crypto, no HTTP, no Kubernetes.

pub mod assertion;
pub mod hash;
pub mod jws;
pub mod keys;
pub mod pkce;
pub mod redirect;
pub mod seal;
pub mod secret;
pub mod token;
pub mod verified_cache;
