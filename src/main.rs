//! `oauth-operator`: the controller, the token server, or the CRDs. (Running it all
//! locally on a control plane of its own is `hack/run.sh`, with the `envtest` crate.)

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use oauth_operator::telemetry::{self, LogFormat};
use oauth_operator::{api, controller, kube_client, server};

// Every argon2 computation allocates ~19 MiB. glibc's allocator keeps such freed blocks in
// per-thread arenas, so RSS grew to hundreds of MiB after a burst of checks (measured:
// 643 MiB for the server, 1.3 GiB for the controller over 1000 clients); mimalloc returns
// them to the OS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "OAuth 2.0 clients as Kubernetes custom resources")]
struct Cli {
    /// Kubeconfig to use; otherwise in-cluster config or $KUBECONFIG / ~/.kube/config.
    #[arg(long, global = true, env = "OAUTH_OPERATOR_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "OAUTH_OPERATOR_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: reconcile OAuthClients into Secrets, verifiers and status.
    Controller(ControllerArgs),
    /// Run the token server.
    Server(ServerArgs),
    /// Print the CRDs as YAML (the content of crds/crds.yaml).
    Crd,
    /// Read a password from standard input (one line) and print its argon2id hash, for
    /// an OAuthUser's `spec.passwordHash`.
    HashPassword,
}

#[derive(Args, Clone)]
struct Common {
    /// Namespace to watch (repeatable); all namespaces when omitted.
    #[arg(
        long = "namespace",
        env = "OAUTH_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Namespace of the operator itself, where the signing-key Secret lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "oauth-operator-system")]
    operator_namespace: String,
    /// Name of the signing-key Secret.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_SIGNING_KEY_SECRET",
        default_value = "oauth-operator-signing-keys"
    )]
    signing_key_secret: String,
    /// The issuer URL: `iss` of every token; the token endpoint is `<issuer>/token`.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_ISSUER",
        default_value = "http://127.0.0.1:8080"
    )]
    issuer: String,
    /// How many argon2 computations may run at once (each needs ~19 MiB).
    #[arg(
        long,
        env = "OAUTH_OPERATOR_MAX_CONCURRENT_HASHES",
        default_value_t = 4
    )]
    max_concurrent_hashes: usize,
    /// The role every token has, first in its `roles` claim; clients cannot remove it.
    #[arg(long, env = "OAUTH_OPERATOR_DEFAULT_ROLE", default_value = "member")]
    default_role: String,
    /// Requests per second to the API server, client-side (client-go's `--kube-api-qps`);
    /// 0 for no limit.
    #[arg(long, env = "OAUTH_OPERATOR_KUBE_API_QPS", default_value_t = 500)]
    kube_api_qps: u32,
    /// Requests the API server may get at once above `--kube-api-qps`.
    #[arg(long, env = "OAUTH_OPERATOR_KUBE_API_BURST", default_value_t = 1000)]
    kube_api_burst: u32,
    /// An issuer whose workload tokens clients may name in `spec.authentication.federated`
    /// (repeatable): exactly as its tokens carry `iss`, https (or http on loopback). Only
    /// these are ever trusted or fetched, whatever a client names.
    #[arg(
        long = "federated-issuer",
        env = "OAUTH_OPERATOR_FEDERATED_ISSUERS",
        value_delimiter = ',',
        value_parser = parse_issuer
    )]
    federated_issuers: Vec<String>,
    /// `aud` of tokens for clients that name no audience; the issuer when omitted. No
    /// `OAuthResource` may claim it.
    #[arg(long, env = "OAUTH_OPERATOR_DEFAULT_AUDIENCE")]
    default_audience: Option<String>,
    /// Audiences no `OAuthResource` claims: `Off` serves them as clients list them, `Warn`
    /// serves and reports them (client condition, audit line, metric), `Enforce` refuses
    /// them (`invalid_target`). Claimed audiences are enforced in every mode.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_AUDIENCE_OWNERSHIP",
        value_enum,
        default_value = "Warn",
        ignore_case = true
    )]
    audience_ownership: oauth_operator::tenancy::Mode,
    /// Honour `OAuthResource` grants by `namespaceSelector`: the token server then watches
    /// the namespaces' labels (and needs RBAC to list them). Off, such a grant matches
    /// nobody and the resource's status says so.
    #[arg(long, env = "OAUTH_OPERATOR_NAMESPACE_SELECTORS")]
    namespace_selectors: bool,
}

fn parse_issuer(s: &str) -> Result<String, String> {
    if oauth_operator::outgoing::is_secure_url(s) && !s.contains(['?', '#']) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an https URL (or http on a loopback host) without query or fragment"
        ))
    }
}

impl Common {
    async fn kube_client(&self, kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
        let limits = kube_client::Limits::new(self.kube_api_qps, self.kube_api_burst);
        Ok(kube_client::connect(kubeconfig.map(PathBuf::as_path), limits).await?)
    }
}

#[derive(Args, Clone)]
struct ControllerOptions {
    /// The shortest access-token lifetime (seconds) a client may ask for.
    #[arg(long, env = "OAUTH_OPERATOR_MIN_TOKEN_LIFETIME", default_value_t = 60)]
    min_token_lifetime: u32,
    /// The longest access-token lifetime (seconds) a client may ask for (the CRD caps it
    /// at 3600).
    #[arg(
        long,
        env = "OAUTH_OPERATOR_MAX_TOKEN_LIFETIME",
        default_value_t = 3600
    )]
    max_token_lifetime: u32,
    /// How long before its expiry a secret counts as expiring soon, e.g. `7d`.
    #[arg(long, env = "OAUTH_OPERATOR_SECRET_EXPIRY_WARNING", default_value = "7d", value_parser = parse_span)]
    secret_expiry_warning: jiff::SignedDuration,
    /// Algorithm of new signing keys: ES256, EdDSA or RS256. Changing it rotates to a key
    /// of the new algorithm (published one lead ahead, like any rotation).
    #[arg(long, env = "OAUTH_OPERATOR_SIGNING_ALGORITHM", default_value = "ES256", value_parser = parse_algorithm)]
    signing_algorithm: jsonwebtoken::Algorithm,
    /// How long a signing key signs before the next one takes over.
    #[arg(long, env = "OAUTH_OPERATOR_SIGNING_KEY_ROTATION", default_value = "30d", value_parser = parse_span)]
    signing_key_rotation: jiff::SignedDuration,
    /// How long a new signing key is in the JWK Set before it signs. Must exceed how long
    /// any resource server caches the JWK Set, and the clock skew between replicas.
    #[arg(long, env = "OAUTH_OPERATOR_SIGNING_KEY_PUBLISH_LEAD", default_value = "1h", value_parser = parse_span)]
    signing_key_publish_lead: jiff::SignedDuration,
    /// Elect one active replica through a Lease in the operator namespace; the others wait.
    #[arg(long, env = "OAUTH_OPERATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_LEASE_NAME",
        default_value = "oauth-operator-controller"
    )]
    lease_name: String,
    /// Seconds a lease lasts without renewal: how long standbys wait when a leader dies
    /// without releasing it.
    #[arg(long, env = "OAUTH_OPERATOR_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
    /// Address of the controller's `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_HEALTH_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    health_listen: SocketAddr,
    /// How many OAuthClients (and, apart, InitialAccessTokens) are reconciled at once; 0
    /// for no bound. The API rate limit bounds the writes; this bounds the memory of
    /// reconciles waiting on it.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_MAX_CONCURRENT_RECONCILES",
        default_value_t = 64
    )]
    max_concurrent_reconciles: u16,
}

fn parse_algorithm(s: &str) -> Result<jsonwebtoken::Algorithm, String> {
    match s {
        "ES256" => Ok(jsonwebtoken::Algorithm::ES256),
        "EdDSA" => Ok(jsonwebtoken::Algorithm::EdDSA),
        "RS256" => Ok(jsonwebtoken::Algorithm::RS256),
        other => Err(format!("{other:?} is not one of ES256, EdDSA, RS256")),
    }
}

fn parse_span(s: &str) -> Result<jiff::SignedDuration, String> {
    api::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Args)]
struct ControllerArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    options: ControllerOptions,
}

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on.
    #[arg(long, env = "OAUTH_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    options: ServerOptions,
}

/// What the token server alone is told.
#[derive(Args, Clone)]
struct ServerOptions {
    /// How many verified secrets the warm-path cache remembers (about 100 bytes each).
    #[arg(
        long,
        env = "OAUTH_OPERATOR_VERIFIED_CACHE_SIZE",
        default_value_t = 50_000
    )]
    verified_cache_size: usize,
    /// How many requests may wait for an argon2 check (beyond the ones running); more are
    /// refused at once with 503 `temporarily_unavailable`.
    #[arg(long, env = "OAUTH_OPERATOR_MAX_QUEUED_HASHES", default_value_t = 64)]
    max_queued_hashes: usize,
    /// The Secret, in the operator namespace, holding the upstream identity providers'
    /// client secrets (each `OAuthUpstream` names its key); the server reads no other.
    #[arg(
        long,
        env = "OAUTH_OPERATOR_UPSTREAM_SECRET",
        default_value = "oauth-operator-upstream-secrets"
    )]
    upstream_secret: String,
    #[command(flatten)]
    lockout: LockoutArgs,
    /// How long a sign-in session lasts: within it, other applications sign the user in
    /// without asking again.
    #[arg(long, env = "OAUTH_OPERATOR_SESSION_LIFETIME", default_value = "8h", value_parser = parse_span)]
    session_lifetime: jiff::SignedDuration,
    /// PEM certificates trusted, besides the system's, for the server's outgoing HTTPS:
    /// upstream providers and federated issuers with a private CA.
    #[arg(long, env = "OAUTH_OPERATOR_EXTRA_CA_FILE")]
    extra_ca_file: Option<PathBuf>,
}

/// Brute-force protection, after Keycloak's brute-force detection.
#[derive(Args, Clone)]
struct LockoutArgs {
    /// Consecutive failures of a client id before a temporary lock; 0 disables locking.
    #[arg(long, env = "OAUTH_OPERATOR_LOCKOUT_FAILURES", default_value_t = 10)]
    lockout_failures: u32,
    /// Lock duration for every `--lockout-failures` failures, e.g. `60s`.
    #[arg(long, env = "OAUTH_OPERATOR_LOCKOUT_WAIT", default_value = "60s", value_parser = parse_span)]
    lockout_wait: jiff::SignedDuration,
    /// The longest lock.
    #[arg(long, env = "OAUTH_OPERATOR_LOCKOUT_MAX_WAIT", default_value = "15m", value_parser = parse_span)]
    lockout_max_wait: jiff::SignedDuration,
    /// Failures older than this are forgotten.
    #[arg(long, env = "OAUTH_OPERATOR_LOCKOUT_RESET", default_value = "12h", value_parser = parse_span)]
    lockout_reset: jiff::SignedDuration,
}

impl LockoutArgs {
    fn config(&self) -> server::LockoutConfig {
        let std = |d: jiff::SignedDuration| std::time::Duration::try_from(d).unwrap_or_default();
        server::LockoutConfig {
            max_failures: self.lockout_failures,
            wait: std(self.lockout_wait),
            max_wait: std(self.lockout_max_wait),
            reset_after: std(self.lockout_reset),
        }
    }
}

fn controller_config(c: &Common, o: &ControllerOptions) -> anyhow::Result<controller::Config> {
    // Otherwise a key would be replaced before it ever signed.
    anyhow::ensure!(
        o.signing_key_rotation > o.signing_key_publish_lead,
        "--signing-key-rotation must be longer than --signing-key-publish-lead"
    );
    // The Pod name in a cluster; elsewhere something no other replica has.
    let identity = match std::env::var("POD_NAME") {
        Ok(name) if !name.is_empty() => name,
        _ => format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "controller".into()),
            oauth_operator::auth::secret::random_id()?
        ),
    };
    Ok(controller::Config {
        leader_election: o.leader_elect.then(|| controller::Election {
            namespace: c.operator_namespace.clone(),
            lease_name: o.lease_name.clone(),
            identity,
            duration_secs: o.lease_duration.max(2),
        }),
        health_listen: Some(o.health_listen),
        default_role: c.default_role.clone(),
        lifetime_bounds: (o.min_token_lifetime, o.max_token_lifetime),
        expiry_warning: o.secret_expiry_warning,
        key_rotation: controller::Rotation {
            algorithm: o.signing_algorithm,
            interval: o.signing_key_rotation,
            publish_lead: o.signing_key_publish_lead,
            max_token_lifetime: jiff::SignedDuration::from_secs(o.max_token_lifetime.into()),
        },
        namespaces: c.namespaces.clone(),
        operator_namespace: c.operator_namespace.clone(),
        signing_key_secret: c.signing_key_secret.clone(),
        token_endpoint: format!("{}/token", c.issuer.trim_end_matches('/')),
        max_concurrent_hashes: c.max_concurrent_hashes,
        max_concurrent_reconciles: o.max_concurrent_reconciles,
        federated_issuers: c.federated_issuers.clone(),
        audience_ownership: c.audience_ownership,
        reserved_audiences: vec![c.issuer.clone(), default_audience(c)],
        namespace_selectors: c.namespace_selectors,
        issuer: c.issuer.clone(),
    })
}

/// `--default-audience`, the issuer when omitted.
fn default_audience(c: &Common) -> String {
    c.default_audience
        .clone()
        .unwrap_or_else(|| c.issuer.clone())
}

fn server_config(
    c: &Common,
    listen: SocketAddr,
    o: &ServerOptions,
) -> anyhow::Result<server::Config> {
    let extra_roots = match &o.extra_ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--extra-ca-file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("--extra-ca-file {}: {e}", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "--extra-ca-file {} holds no PEM certificate",
                path.display()
            );
            certs
        }
    };
    Ok(server::Config {
        listen,
        default_audience: default_audience(c),
        audience_ownership: c.audience_ownership,
        namespace_selectors: c.namespace_selectors,
        default_role: c.default_role.clone(),
        issuer: c.issuer.clone(),
        namespaces: c.namespaces.clone(),
        operator_namespace: c.operator_namespace.clone(),
        signing_key_secret: c.signing_key_secret.clone(),
        upstream_secret: o.upstream_secret.clone(),
        max_concurrent_hashes: c.max_concurrent_hashes,
        max_queued_hashes: o.max_queued_hashes,
        verified_cache_size: o.verified_cache_size,
        lockout: o.lockout.config(),
        session_lifetime_seconds: o.session_lifetime.as_secs().max(60),
        federated_issuers: c.federated_issuers.clone(),
        extra_roots,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _log_writer = (!matches!(cli.command, Command::Crd | Command::HashPassword))
        .then(|| telemetry::init(cli.log_format));
    match cli.command {
        Command::Crd => {
            print!("{}", api::crds_yaml()?);
            Ok(())
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            println!("{}", oauth_operator::auth::hash::hash(password)?);
            Ok(())
        }
        Command::Controller(args) => {
            let client = args.common.kube_client(cli.kubeconfig.as_ref()).await?;
            controller::run(client, controller_config(&args.common, &args.options)?).await?;
            Ok(())
        }
        Command::Server(args) => {
            let client = args.common.kube_client(cli.kubeconfig.as_ref()).await?;
            server::run(
                client,
                server_config(&args.common, args.listen, &args.options)?,
            )
            .await
        }
    }
}
