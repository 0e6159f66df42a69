//! The upstream identity providers (`OAuthUpstream`, of the operator namespace) and
//! their client secrets (the one upstream Secret, watched by name), as the sign-in
//! pages and the callback read them.
//!
//! A missing upstream Secret, or a missing key in it, does not make the index unready:
//! the built-in users and every token keep working, and only that provider's sign-ins
//! answer an error page (the watch logs a warning).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Index, Watch, read, write};
use crate::api::{ClaimMapping, OAuthUpstream};
use crate::auth::secret::SecretString;

/// What the token server knows of one upstream provider.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamEntry {
    /// The `OAuthUpstream`'s name: the path segment of `/authorize/upstream/{name}`.
    pub name: String,
    /// Its UID: tokens of its users carry it, so deleting the resource ends them even if
    /// one of the same name is created again.
    pub uid: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_key: String,
    pub scopes: Vec<String>,
    pub claims: ClaimMapping,
}

impl UpstreamEntry {
    fn from_resource(u: &OAuthUpstream) -> Option<Self> {
        Some(UpstreamEntry {
            name: u.metadata.name.clone()?,
            uid: u.metadata.uid.clone()?,
            display_name: u.spec.display_name.clone(),
            issuer: u.spec.issuer.clone(),
            client_id: u.spec.client_id.clone(),
            client_secret_key: u.spec.client_secret_key.clone(),
            scopes: u.spec.scopes.clone(),
            claims: u.spec.claims.clone(),
        })
    }
}

#[derive(Default)]
pub(super) struct Upstreams {
    /// By name, in order: the sign-in page lists them so.
    by_name: BTreeMap<String, Arc<UpstreamEntry>>,
    /// The upstream Secret's values by key; empty while it is missing.
    secrets: HashMap<String, SecretString>,
}

impl Index {
    /// The upstream provider of this name.
    pub fn upstream(&self, name: &str) -> Option<Arc<UpstreamEntry>> {
        read(&self.upstreams).by_name.get(name).cloned()
    }

    /// Every upstream provider, by name.
    pub fn upstreams(&self) -> Vec<Arc<UpstreamEntry>> {
        read(&self.upstreams).by_name.values().cloned().collect()
    }

    /// The client secret of `upstream`, if the upstream Secret holds its key.
    pub fn upstream_secret(&self, upstream: &UpstreamEntry) -> Option<SecretString> {
        read(&self.upstreams)
            .secrets
            .get(&upstream.client_secret_key)
            .cloned()
    }

    /// Adds or replaces an upstream provider.
    pub fn apply_upstream(&self, u: &OAuthUpstream) {
        if let Some(e) = UpstreamEntry::from_resource(u) {
            write(&self.upstreams)
                .by_name
                .insert(e.name.clone(), Arc::new(e));
        }
    }

    /// Removes a deleted upstream provider.
    pub fn delete_upstream(&self, name: &str) {
        write(&self.upstreams).by_name.remove(name);
    }

    /// Replaces every upstream provider at once, after a (re)list, and marks them synced.
    pub fn reset_upstreams<'a>(&self, all: impl IntoIterator<Item = &'a OAuthUpstream>) {
        {
            let mut upstreams = write(&self.upstreams);
            upstreams.by_name = all
                .into_iter()
                .filter_map(UpstreamEntry::from_resource)
                .map(|e| (e.name.clone(), Arc::new(e)))
                .collect();
        }
        self.mark_synced(Watch::Upstreams, None);
    }

    /// Installs the upstream Secret's values (empty when it is missing), and marks it
    /// synced.
    pub fn set_upstream_secrets(&self, secrets: HashMap<String, SecretString>) {
        write(&self.upstreams).secrets = secrets;
        self.mark_synced(Watch::UpstreamSecret, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthUpstreamSpec;

    fn upstream(name: &str, key: &str) -> OAuthUpstream {
        let mut u = OAuthUpstream::new(
            name,
            OAuthUpstreamSpec {
                display_name: "Corp".into(),
                issuer: "https://id.corp.test".into(),
                client_id: "c".into(),
                client_secret_key: key.into(),
                scopes: vec!["openid".into()],
                claims: ClaimMapping::default(),
            },
        );
        u.metadata.uid = Some(format!("uid-{name}"));
        u
    }

    #[test]
    fn not_ready_until_the_upstreams_and_their_secret_listed() {
        let index = Index::default();
        index.reset_verifiers(None, []);
        index.reset_token_verifiers(None, []);
        index.reset_revoked([], 0);
        index.reset_users([]);
        index.reset_service_accounts(None, []);
        index.reset_resources(None, []);
        index.set_keys(Some(
            crate::auth::keys::KeySet::load(
                &crate::auth::keys::StoredKeys::generate_es256().expect("gen"),
            )
            .expect("load"),
        ));
        assert!(
            !index.is_ready(),
            "a provider could be missing from the page"
        );
        index.reset_upstreams([]);
        assert!(!index.is_ready(), "the upstream Secret has not listed");
        // Listed and missing: ready all the same.
        index.set_upstream_secrets(HashMap::new());
        assert!(index.is_ready());
    }

    #[test]
    fn upstreams_are_listed_by_name_and_find_their_secret() {
        let index = Index::default();
        index.reset_upstreams([&upstream("b", "kb"), &upstream("a", "ka")]);
        let names: Vec<String> = index.upstreams().iter().map(|u| u.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = index.upstream("a").expect("indexed");
        assert_eq!(a.uid, "uid-a");
        assert!(index.upstream_secret(&a).is_none(), "no Secret yet");
        index.set_upstream_secrets(HashMap::from([(
            "ka".to_string(),
            SecretString::new("s".into()),
        )]));
        assert_eq!(
            index.upstream_secret(&a).as_ref().map(SecretString::expose),
            Some("s")
        );
        index.delete_upstream("a");
        assert!(index.upstream("a").is_none());
        index.apply_upstream(&upstream("c", "kc"));
        assert_eq!(index.upstreams().len(), 2);
    }
}
