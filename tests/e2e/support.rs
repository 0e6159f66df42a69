//! Test support: one real control plane per test binary, a namespace per test, and the
//! real `oauth-operator` binary run as controller and token-server processes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use envtest::ControlPlane;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use oauth_operator::api::OAuthClient;

/// Shared by every test of the binary.
pub struct Env {
    pub control_plane: ControlPlane,
    pub client: kube::Client,
}

impl Env {
    pub async fn start() -> anyhow::Result<Self> {
        let crds = committed_crds()?;
        let started = Instant::now();
        let control_plane = ControlPlane::start(envtest::Options {
            dir: None,
            crds,
            issuer_at_own_url: false,
        })
        .await?;
        eprintln!(
            "control plane ready in {:.1}s at {} (state in {})",
            started.elapsed().as_secs_f64(),
            control_plane.server(),
            control_plane.dir().display()
        );
        let client = control_plane.client().await?;
        Ok(Env {
            control_plane,
            client,
        })
    }
}

/// The CRDs exactly as committed in `crds/`: what users install.
fn committed_crds() -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/crds.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            out.push(serde_yaml_ng::from_value(value)?);
        }
    }
    Ok(out)
}

pub type TestFn = fn(Ctx) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Wraps an async test into a libtest-mimic trial with its own namespace.
pub fn trial(
    name: &'static str,
    env: Option<Arc<Env>>,
    rt: tokio::runtime::Handle,
    f: TestFn,
) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, move || {
        let env = env.ok_or("no control plane")?;
        rt.block_on(async move {
            let ctx = Ctx::new(env.clone(), name)
                .await
                .map_err(|e| format!("setting up: {e:#}"))?;
            let ns = ctx.ns.clone();
            // Shared, so the logs outlive the test's `Ctx` for the checks below.
            let workdir = ctx.workdir.clone();
            let known = ctx.known_secrets.clone();
            let result = tokio::time::timeout(Duration::from_secs(300), f(ctx)).await;
            let mut outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err("timed out after 300s".to_string()),
            };
            if outcome.is_ok() {
                let known = known
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                outcome = leak_check(&env.client, &ns, workdir.path(), known)
                    .await
                    .map_err(|e| format!("leak check: {e:#}"));
            }
            if outcome.is_err() {
                dump_logs(workdir.path());
            }
            cleanup_namespace(&env.client, &ns).await;
            outcome
        })
        .map_err(Into::into)
    })
}

/// Every test ends with this check: no secret value of the test's namespace (client
/// secrets, initial access tokens, registration hashes, private signing keys, the
/// hashes in the verifiers and users, and what the test noted with
/// [`Ctx::secret`]: passwords, codes, tokens) appears in a log line of its processes, in an Event,
/// or anywhere in an OAuthClient, InitialAccessToken or OAuthGrant (spec, status, conditions). The
/// error never quotes the value it found.
async fn leak_check(
    client: &kube::Client,
    ns: &str,
    logs: &Path,
    known: Vec<(String, String)>,
) -> anyhow::Result<()> {
    use k8s_openapi::api::events::v1::Event;
    use oauth_operator::api::{
        InitialAccessToken, InitialAccessTokenVerifier, OAuthClientVerifier, OAuthGrant, OAuthUser,
    };
    let mut secrets: Vec<(String, String)> = known;
    for u in Api::<OAuthUser>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        secrets.push((
            format!(
                "password hash of {}",
                u.metadata.name.clone().unwrap_or_default()
            ),
            u.spec.password_hash,
        ));
    }
    for s in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        let name = s.metadata.name.clone().unwrap_or_default();
        for (key, value) in s.data.unwrap_or_default() {
            if ["client_id", "token_endpoint"].contains(&key.as_str())
                || key.ends_with(".client_id")
            {
                continue;
            }
            let text = String::from_utf8_lossy(&value.0).into_owned();
            if key == oauth_operator::auth::keys::SECRET_KEY {
                // Private keys: any full line of a PEM body.
                for line in text.split("\\n").filter(|l| l.len() == 64) {
                    secrets.push((format!("{name}/{key}"), line.to_string()));
                }
                // And the sealing key of codes and sign-in cookies.
                if let Some(k) = oauth_operator::auth::keys::StoredKeys::from_json(&value.0)
                    .ok()
                    .and_then(|k| k.sealing_key)
                {
                    secrets.push((format!("{name}/{key} sealing key"), k));
                }
            } else if text.len() >= 16 {
                secrets.push((format!("{name}/{key}"), text));
            }
        }
    }
    for v in Api::<OAuthClientVerifier>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        for h in v
            .spec
            .secrets
            .iter()
            .flat_map(|s| [s.hash.clone(), s.sha256.clone()])
            .flatten()
            .chain(v.spec.registration_access_token_hash.clone())
        {
            secrets.push((
                format!("verifier {}", v.metadata.name.clone().unwrap_or_default()),
                h,
            ));
        }
    }
    for v in Api::<InitialAccessTokenVerifier>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        for h in [v.spec.hash, v.spec.sha256].into_iter().flatten() {
            secrets.push((
                format!("verifier {}", v.metadata.name.clone().unwrap_or_default()),
                h,
            ));
        }
    }

    let mut places: Vec<(String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(logs) {
        for e in entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        {
            places.push((
                format!("log {}", e.file_name().to_string_lossy()),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            ));
        }
    }
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?;
    places.push(("Events".into(), serde_json::to_string(&events.items)?));
    let clients = Api::<OAuthClient>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?;
    places.push((
        "OAuthClients".into(),
        serde_json::to_string(&clients.items)?,
    ));
    let tokens = Api::<InitialAccessToken>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?;
    places.push((
        "InitialAccessTokens".into(),
        serde_json::to_string(&tokens.items)?,
    ));
    let grants = Api::<OAuthGrant>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?;
    places.push(("OAuthGrants".into(), serde_json::to_string(&grants.items)?));

    for (source, value) in &secrets {
        for (place, text) in &places {
            anyhow::ensure!(
                !text.contains(value.as_str()),
                "a value of {source} appears in {place}"
            );
        }
    }
    Ok(())
}

fn dump_logs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("----- {} (last 60 lines) -----", e.path().display());
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

async fn cleanup_namespace(client: &kube::Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(ns, &DeleteParams::background()).await;
}

/// Creates the namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    Ok(())
}

/// One test's world: its namespace, a scratch directory, and the processes it started.
pub struct Ctx {
    pub env: Arc<Env>,
    pub client: kube::Client,
    pub ns: String,
    pub workdir: Arc<tempfile::TempDir>,
    pub http: reqwest::Client,
    /// Values only the test knows (passwords, codes, tokens handed out), which the leak
    /// check looks for too: see [`Ctx::secret`].
    pub known_secrets: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Ctx {
    async fn new(env: Arc<Env>, test: &str) -> anyhow::Result<Self> {
        let suffix = oauth_operator::auth::secret::random_id()?
            .to_lowercase()
            .replace(['-', '_'], "");
        let base: String = test.replace('_', "-").chars().take(40).collect();
        let ns = format!("{}-{}", base.trim_end_matches('-'), &suffix[..6]);
        create_namespace(&env.client, &ns).await?;
        Ok(Ctx {
            client: env.client.clone(),
            env,
            ns,
            workdir: Arc::new(
                tempfile::Builder::new()
                    .prefix("oauth-operator-e2e-")
                    .tempdir()?,
            ),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            known_secrets: Arc::default(),
        })
    }

    /// Notes `value` (what `what` is) as a secret the leak check must not find anywhere.
    pub fn secret(&self, what: &str, value: &str) {
        self.known_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((what.to_string(), value.to_string()));
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Runs kubectl against the test control plane in the test namespace.
    pub fn kubectl(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<std::process::Output> {
        use std::io::Write;
        let mut child = Command::new(self.env.control_plane.kubectl())
            .arg(format!(
                "--kubeconfig={}",
                self.env.control_plane.kubeconfig().display()
            ))
            .arg(format!("--namespace={}", self.ns))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or("").as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// `kubectl apply -f -`; fails with kubectl's message if the apiserver refuses.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        self.apply_with(&[], yaml)
    }

    /// `kubectl apply -f -` in namespace `ns` (objects naming no namespace land there).
    pub fn apply_in(&self, ns: &str, yaml: &str) -> anyhow::Result<()> {
        self.apply_with(&["-n", ns], yaml)
    }

    /// `kubectl apply --server-side -f -`, for batches of many objects at once.
    pub fn apply_server_side(&self, yaml: &str) -> anyhow::Result<()> {
        self.apply_with(&["--server-side"], yaml)
    }

    fn apply_with(&self, flags: &[&str], yaml: &str) -> anyhow::Result<()> {
        let args: Vec<&str> = ["apply"]
            .iter()
            .chain(flags)
            .chain(&["-f", "-"])
            .copied()
            .collect();
        let out = self.kubectl(&args, Some(yaml))?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `kubectl apply -f -` expected to be refused; returns kubectl's error output.
    pub fn apply_refused(&self, yaml: &str) -> anyhow::Result<String> {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml))?;
        if out.status.success() {
            bail!("kubectl apply unexpectedly succeeded for:\n{yaml}");
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Starts the binary with `kubeconfig` (a ServiceAccount's, say) instead of the admin's.
    fn spawn_as(&self, name: &str, args: &[String], kubeconfig: &Path) -> anyhow::Result<Proc> {
        // One log per process, numbered, so a restarted component's log is its own.
        static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.workdir.path().join(format!("{name}-{n}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_oauth-operator"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args)
            .env("RUST_LOG", "info,oauth_operator=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Proc {
            child: Some(child),
            log,
        })
    }

    fn common_args(&self, issuer: &str) -> Vec<String> {
        common_args_in(&self.ns, issuer)
    }

    /// A controller and a token server of their own for namespace `ns` (watched and
    /// operator namespace both), as a second installation beside the test's: another
    /// issuer, with its own signing keys. The caller creates and deletes `ns`.
    pub async fn start_stack_in(&self, ns: &str) -> anyhow::Result<(Proc, Server)> {
        let port = envtest::free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let kubeconfig = self.env.control_plane.kubeconfig();
        let mut args = vec![
            "controller".to_string(),
            format!("--health-listen=127.0.0.1:{}", envtest::free_port()?),
            "--leader-elect=false".to_string(),
        ];
        args.extend(common_args_in(ns, &url));
        let controller = self.spawn_as(&format!("controller-{ns}"), &args, kubeconfig)?;
        let mut args = vec!["server".to_string(), format!("--listen=127.0.0.1:{port}")];
        args.extend(common_args_in(ns, &url));
        let proc = self.spawn_as(&format!("server-{port}"), &args, kubeconfig)?;
        let mut server = Server {
            url,
            _process: proc,
        };
        self.wait_server(&mut server).await?;
        Ok((controller, server))
    }

    /// Starts a controller scoped to the test namespace.
    pub fn start_controller(&self, issuer: &str) -> anyhow::Result<Proc> {
        self.start_controller_with(issuer, &[])
    }

    /// Like [`Ctx::start_controller`], with extra flags.
    pub fn start_controller_with(&self, issuer: &str, extra: &[&str]) -> anyhow::Result<Proc> {
        self.start_controller_as(self.env.control_plane.kubeconfig(), issuer, extra)
    }

    /// Like [`Ctx::start_controller_with`], with another kubeconfig.
    pub fn start_controller_as(
        &self,
        kubeconfig: &Path,
        issuer: &str,
        extra: &[&str],
    ) -> anyhow::Result<Proc> {
        let mut args = vec![
            "controller".to_string(),
            // Not port 0: the kernel could hand it a port a token server was just told.
            format!("--health-listen=127.0.0.1:{}", envtest::free_port()?),
        ];
        args.extend(self.common_args(issuer));
        // Tests that restart a controller would wait out a dead one's lease; the
        // leader-election tests turn it on.
        if !extra.iter().any(|a| a.starts_with("--leader-elect")) {
            args.push("--leader-elect=false".to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        self.spawn_as("controller", &args, kubeconfig)
    }

    /// A controller and a token server for the test namespace, agreeing on the issuer.
    pub async fn start_stack(&self) -> anyhow::Result<(Proc, Server)> {
        self.start_stack_with(&[]).await
    }

    /// Like [`Ctx::start_stack`], with extra flags for the token server.
    pub async fn start_stack_with(&self, server_args: &[&str]) -> anyhow::Result<(Proc, Server)> {
        let port = envtest::free_port()?;
        let controller = self.start_controller(&format!("http://127.0.0.1:{port}"))?;
        let server = self.start_server_with(port, server_args).await?;
        Ok((controller, server))
    }

    /// Starts a token server on `port`, scoped to the test namespace, and waits until it
    /// is ready (which needs the signing keys a controller creates).
    pub async fn start_server(&self, port: u16) -> anyhow::Result<Server> {
        self.start_server_with(port, &[]).await
    }

    /// Like [`Ctx::start_server`], with extra flags.
    pub async fn start_server_with(&self, port: u16, extra: &[&str]) -> anyhow::Result<Server> {
        self.start_server_as(self.env.control_plane.kubeconfig(), port, extra)
            .await
    }

    /// Like [`Ctx::start_server_with`], with another kubeconfig.
    pub async fn start_server_as(
        &self,
        kubeconfig: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Server> {
        let url = format!("http://127.0.0.1:{port}");
        let mut args = vec!["server".to_string(), format!("--listen=127.0.0.1:{port}")];
        // An `--issuer=` among `extra` replaces the default (the server's own URL).
        let issuer = extra
            .iter()
            .find_map(|a| a.strip_prefix("--issuer="))
            .map_or_else(|| url.clone(), str::to_string);
        args.extend(self.common_args(&issuer));
        args.extend(
            extra
                .iter()
                .filter(|a| !a.starts_with("--issuer="))
                .map(|a| a.to_string()),
        );
        let proc = self.spawn_as(&format!("server-{port}"), &args, kubeconfig)?;
        let mut server = Server {
            url,
            _process: proc,
        };
        self.wait_server(&mut server).await?;
        Ok(server)
    }

    async fn wait_server(&self, server: &mut Server) -> anyhow::Result<()> {
        // Ready means this process answers: it is still running, and the port serves the
        // token server's discovery document (not some other process's /readyz).
        let started = Instant::now();
        loop {
            if let Some(status) = server.process_mut().exited()? {
                bail!(
                    "the token server exited ({status}) before it was ready: {}",
                    server.process().log_text()
                );
            }
            if self.server_answers(&server.url).await {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("token server not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn server_answers(&self, url: &str) -> bool {
        let ready = self.http.get(format!("{url}/readyz")).send().await;
        let discovery = self
            .http
            .get(format!("{url}/.well-known/oauth-authorization-server"))
            .send()
            .await;
        match (ready, discovery) {
            (Ok(r), Ok(d)) if r.status().is_success() && d.status().is_success() => d
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["token_endpoint"].is_string()),
            _ => false,
        }
    }

    /// Waits until the client's condition `type_` has `status` (and `reason`, if given).
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<OAuthClient> {
        let api: Api<OAuthClient> = self.api();
        eventually(
            Duration::from_secs(60),
            &format!("{name}: {type_}={status} {reason:?}"),
            || async {
                let c = api.get(name).await?;
                let cond = c
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
                    .cloned();
                let ok = cond
                    .as_ref()
                    .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r));
                anyhow::ensure!(ok, "condition now: {cond:?}");
                Ok(c)
            },
        )
        .await
    }

    /// Waits until the client reports `Ready=True` and returns it.
    /// A client whose secret a team chose (`secretKeyRef` to a Secret written here), so
    /// the token server verifies it with argon2id. Waits until Ready; returns its client id
    /// (its name) and the secret.
    pub async fn chosen_client(&self, name: &str, value: &str) -> anyhow::Result<(String, String)> {
        self.secret("a chosen client secret", value);
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-chosen\nstringData:\n  password: {value}\n---\napiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\nspec:\n  clientId: {name}\n  scopes: [read]\n  secrets:\n  - name: chosen\n    secretKeyRef:\n      name: {name}-chosen\n      key: password\n"
        ))?;
        self.wait_ready(name).await?;
        Ok((name.to_string(), value.to_string()))
    }

    pub async fn wait_ready(&self, name: &str) -> anyhow::Result<OAuthClient> {
        let api: Api<OAuthClient> = self.api();
        eventually(
            Duration::from_secs(60),
            &format!("OAuthClient {name} Ready"),
            || async {
                let c = api.get(name).await?;
                // Ready for the spec as it is now: a status from before the last
                // change still says Ready until the reconcile of the change writes it.
                let current = c.status.as_ref().is_some_and(|s| {
                    s.observed_generation.is_some()
                        && s.observed_generation == c.metadata.generation
                });
                let ready = c
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True");
                anyhow::ensure!(current && ready, "not ready: {:?}", c.status);
                Ok(c)
            },
        )
        .await
    }

    /// The credentials (client id, secret) in a client's Secret.
    pub async fn credentials(&self, secret_name: &str) -> anyhow::Result<(String, String)> {
        Ok((
            self.credentials_key(secret_name, "client_id").await?,
            self.credentials_key(secret_name, "client_secret").await?,
        ))
    }

    /// One key of a Secret, as text.
    pub async fn credentials_key(&self, secret_name: &str, key: &str) -> anyhow::Result<String> {
        let s: Secret = self.api::<Secret>().get(secret_name).await?;
        let data = s.data.context("secret has no data")?;
        let value = data
            .get(key)
            .with_context(|| format!("Secret {secret_name} has no key {key}"))?;
        Ok(String::from_utf8(value.0.clone())?)
    }
}

fn common_args_in(ns: &str, issuer: &str) -> Vec<String> {
    vec![
        format!("--namespace={ns}"),
        format!("--operator-namespace={ns}"),
        format!("--issuer={issuer}"),
    ]
}

/// The message of a client's condition `type_`, empty when absent.
pub fn condition_message(client: &OAuthClient, type_: &str) -> String {
    client
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Verifies `jwt` against the server's `/jwks` and returns its claims.
pub async fn verify_token(
    http: &reqwest::Client,
    server: &Server,
    jwt: &str,
    audience: &str,
) -> anyhow::Result<oauth_operator::auth::token::AccessTokenClaims> {
    verify_jwt(http, server, jwt, audience).await
}

/// Verifies any JWT of the server (an access or ID token) against its `/jwks`: signature,
/// `iss`, `aud`, `exp`.
pub async fn verify_jwt<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    server: &Server,
    jwt: &str,
    audience: &str,
) -> anyhow::Result<T> {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let jwks: JwkSet = http
        .get(format!("{}/jwks", server.url))
        .send()
        .await?
        .json()
        .await?;
    let header = decode_header(jwt)?;
    let kid = header.kid.context("kid")?;
    let jwk = jwks.find(&kid).context("kid not in /jwks")?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[audience]);
    v.set_issuer(&[server.url.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    Ok(decode(jwt, &DecodingKey::from_jwk(jwk)?, &v)?.claims)
}

/// A child process killed when dropped.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The resident set size of the process, in MiB (from /proc).
    pub fn rss_mib(&self) -> anyhow::Result<u64> {
        let child = self.child.as_ref().context("process already reaped")?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("VmRSS")?
            .parse()?;
        Ok(kib / 1024)
    }

    /// Sends SIGTERM, as the kubelet does before stopping a Pod.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("process already reaped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it is
    /// still running.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(None)
    }

    /// The exit status if the process has exited (it is then reaped), `None` if it runs.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let child = self.child.as_mut().context("process already reaped")?;
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running token server.
pub struct Server {
    pub url: String,
    /// Kept for its `Drop`: the server dies with this handle.
    pub _process: Proc,
}

impl Server {
    /// The server's process (for its log).
    pub fn process(&self) -> &Proc {
        &self._process
    }

    /// The server's process, to signal it.
    pub fn process_mut(&mut self) -> &mut Proc {
        &mut self._process
    }

    /// The `/metrics` text.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        Ok(http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .text()
            .await?)
    }

    /// A client-credentials token for `id`/`secret`: the access token, or an error with
    /// the status and body when the server refuses.
    pub async fn issue(
        &self,
        http: &reqwest::Client,
        id: &str,
        secret: &str,
    ) -> anyhow::Result<String> {
        let (code, _, body) = self
            .token(
                http,
                Some((id, secret)),
                &[("grant_type", "client_credentials")],
            )
            .await?;
        anyhow::ensure!(code == 200, "token refused: {code} {body}");
        Ok(body["access_token"]
            .as_str()
            .context("access_token")?
            .to_string())
    }

    /// POSTs a token request: `basic` credentials in the header, `form` in the body.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, serde_json::Value)> {
        let mut req = http.post(format!("{}/token", self.url)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, headers, body))
    }
}

/// The value of the first line of a `/metrics` text that starts with `name` (a metric,
/// with its labels if given); -1 when there is none.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// Retries `check` until it succeeds or `timeout` passes; the last error explains.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() > timeout => {
                bail!("{what}: not reached after {timeout:?}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
