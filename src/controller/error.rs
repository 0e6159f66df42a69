use kube::runtime::controller::Action;

/// What can fail in a reconcile. Mapped once, at the edge, to a `Ready=False` condition
/// or a retry; never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the resource has no namespace")]
    MissingNamespace,
    #[error("the resource has no UID yet")]
    MissingUid,
    #[error("reading Secret {name}: {source}")]
    GetSecret { name: String, source: kube::Error },
    #[error("writing Secret {name}: {source}")]
    WriteSecret { name: String, source: kube::Error },
    #[error("reading ServiceAccount {name}: {source}")]
    GetServiceAccount { name: String, source: kube::Error },
    #[error("reading OAuthClientVerifier {name}: {source}")]
    GetVerifier { name: String, source: kube::Error },
    #[error("writing OAuthClientVerifier {name}: {source}")]
    WriteVerifier { name: String, source: kube::Error },
    #[error("writing status of {name}: {source}")]
    PatchStatus { name: String, source: kube::Error },
    #[error("ensuring the signing-key Secret {name}: {source}")]
    EnsureSigningKeys { name: String, source: kube::Error },
    #[error(transparent)]
    Random(#[from] crate::auth::secret::RandomError),
    #[error(transparent)]
    Hash(#[from] crate::auth::hash::HashError),
    #[error(transparent)]
    Keys(#[from] crate::auth::keys::KeyError),
    #[error("the system clock is out of range")]
    Clock,
    #[error("a hashing task failed: {0}")]
    HashTask(#[from] tokio::task::JoinError),
    #[error("lost the leader lease while reconciling; stopping")]
    LostLeadership,
}

impl Error {
    /// A short, bounded label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingNamespace => "missing_namespace",
            Error::MissingUid => "missing_uid",
            Error::GetSecret { .. } => "get_secret",
            Error::WriteSecret { .. } => "write_secret",
            Error::GetServiceAccount { .. } => "get_service_account",
            Error::GetVerifier { .. } => "get_verifier",
            Error::WriteVerifier { .. } => "write_verifier",
            Error::PatchStatus { .. } => "patch_status",
            Error::EnsureSigningKeys { .. } => "ensure_signing_keys",
            Error::Random(_) => "random",
            Error::Hash(_) | Error::HashTask(_) => "hash",
            Error::Keys(_) => "keys",
            Error::Clock => "clock",
            Error::LostLeadership => "leader_election",
        }
    }

    /// Transient API errors retry soon; everything else backs off further.
    pub fn retry(&self) -> Action {
        match self {
            Error::MissingNamespace | Error::MissingUid => Action::await_change(),
            _ => Action::requeue(std::time::Duration::from_secs(5)),
        }
    }
}
