//! Observe: the reads of one reconcile, into a plain [`Observed`] the plan decides from.
//!
//! Everything here is a read: the id and display-name owners from the watch stores, the
//! credentials Secret and the verifier (from the owned watches' stores, the API server on a
//! miss), every Secret the spec refers to (brought-your-own values, hashes, the
//! registration access token's hash; always from the API server, as the controller watches
//! no Secret it did not make), whether each ServiceAccount the spec names exists (its
//! metadata, from the API server), and the JWK Set at a `jwksUri` (through
//! [`super::super::jwks_uri`]'s cache). Nothing is decided here.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::Api;

use super::super::{Cached, Context, Error};
use crate::api::{OAuthClient, OAuthClientVerifier};

/// What one reconcile read. Holds Secrets, so it has no `Debug`: it must never be logged.
pub struct Observed {
    /// The client id in force.
    pub client_id: String,
    /// The credentials Secret's name.
    pub secret_name: String,
    /// `namespace/name` of an older client with the same client id.
    pub id_owner: Option<String>,
    /// `namespace/name` of an older client in the namespace with the same display name and
    /// version.
    pub name_owner: Option<String>,
    /// The credentials Secret as read, with its resourceVersion.
    pub credentials: Option<Secret>,
    /// Every Secret the spec refers to, by name; `None` for one that does not exist (yet).
    pub referenced: BTreeMap<String, Option<Secret>>,
    /// The verifier as read.
    pub verifier: Option<OAuthClientVerifier>,
    /// Whether each ServiceAccount of `spec.authentication` exists, by namespace and name.
    pub service_accounts: BTreeMap<(String, String), bool>,
    /// What `spec.authentication.privateKeyJwt.jwksUri` answered: its text, or why not.
    pub jwks_uri: Option<Result<String, String>>,
    /// What the client gets for each audience it asks for.
    pub audiences: super::audiences::View,
    /// What the platform's policies say of it.
    pub policy: super::policy::View,
}

impl Observed {
    /// A Secret the spec refers to, if it exists.
    pub fn referenced(&self, name: &str) -> Option<&Secret> {
        self.referenced.get(name).and_then(Option::as_ref)
    }
}

/// Reads what a reconcile of `client` decides from.
pub async fn observe(client: &OAuthClient, ctx: &Context) -> Result<Observed, Error> {
    let ns = client.namespace().ok_or(Error::MissingNamespace)?;
    let client_id = client.effective_client_id().ok_or(Error::MissingUid)?;
    let secret_name = client.credentials_secret_name();

    // Ownership is judged over the whole picture: wait until every watch has listed once.
    ctx.stores_ready().await;
    ctx.claims.ready().await;
    ctx.policies_ready().await;
    let id_owner = ctx.client_id_owner(client, &client_id);
    let name_owner = ctx.display_name_owner(client);
    let mut observed = Observed {
        client_id,
        secret_name,
        id_owner,
        name_owner,
        credentials: None,
        referenced: BTreeMap::new(),
        verifier: None,
        service_accounts: BTreeMap::new(),
        jwks_uri: None,
        audiences: Default::default(),
        policy: Default::default(),
    };
    if observed.id_owner.is_some() {
        // The plan stops here (and deletes the verifier): nothing more to read.
        return Ok(observed);
    }

    observed.audiences = super::audiences::observe(client, &observed.client_id, ctx);
    observed.policy = super::policy::observe(client, ctx);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    // The watch's copy first. A stale copy is harmless: a replace carries its
    // resourceVersion (409, and the reconcile starts over), and an unchanged verifier is
    // not written. A miss is trusted (the create that follows fails with 409 if the name
    // is taken) until a create has found it taken: the watch sees only Secrets this
    // controller labelled, and a Secret of the same name someone else made must then be
    // read to be reported (SecretConflict) rather than run into on every create.
    let name = &observed.secret_name;
    observed.credentials = match ctx.cached_secret(&ns, name) {
        Cached::Found(s) => {
            ctx.set_secret_taken(&ns, name, false);
            Some(Secret::clone(&s))
        }
        Cached::Absent if !ctx.secret_taken(&ns, name) => None,
        Cached::Absent | Cached::Unknown => read_secret(&secrets, name).await?,
    };
    let mut names: Vec<String> = client
        .secret_entries()
        .iter()
        .filter_map(|e| e.secret_key_ref.as_ref().or(e.hash_ref.as_ref()))
        .map(|r| r.name.clone())
        .collect();
    if let Some(reg) = &client.spec.registration {
        names.push(reg.access_token_hash_ref.name.clone());
    }
    if let Some(p) = client
        .spec
        .authentication
        .as_ref()
        .and_then(|a| a.private_key_jwt.as_ref())
    {
        if let Some(r) = &p.jwks_secret_ref {
            names.push(r.name.clone());
        }
        if let Some(uri) = &p.jwks_uri {
            observed.jwks_uri = Some(ctx.jwks_uris.read(uri).await);
        }
    }
    for name in names {
        if let Entry::Vacant(slot) = observed.referenced.entry(name) {
            let s = read_secret(&secrets, slot.key()).await?;
            slot.insert(s);
        }
    }

    for account in client
        .spec
        .authentication
        .iter()
        .flat_map(|a| &a.service_accounts)
    {
        let namespace = account.namespace.clone().unwrap_or_else(|| ns.clone());
        let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
        let found = api
            .get_metadata_opt(&account.name)
            .await
            .map_err(|source| Error::GetServiceAccount {
                name: format!("{namespace}/{}", account.name),
                source,
            })?;
        observed
            .service_accounts
            .insert((namespace, account.name.clone()), found.is_some());
    }

    let name = client.name_any();
    match ctx.cached_verifier(&ns, &name) {
        Cached::Found(v) => {
            observed.verifier = Some(OAuthClientVerifier::clone(&v));
            return Ok(observed);
        }
        // Every verifier is watched, whoever made it: not in a listed store means none
        // existed at the list, and one made since is this controller's own (the create
        // that follows then fails with 409, and the reconcile starts over).
        Cached::Absent => return Ok(observed),
        Cached::Unknown => {}
    }
    let verifiers: Api<OAuthClientVerifier> = Api::namespaced(ctx.client.clone(), &ns);
    observed.verifier = verifiers
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetVerifier { name, source })?;
    Ok(observed)
}

/// Reads a Secret; `None` when it does not exist (yet).
async fn read_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name).await.map_err(|source| Error::GetSecret {
        name: name.to_string(),
        source,
    })
}
