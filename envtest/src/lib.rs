//! A real local control plane, like controller-runtime's envtest: etcd, kube-apiserver and
//! kube-controller-manager (for garbage collection and namespace deletion) on 127.0.0.1 with
//! free ports and a fresh PKI. The binaries are built from the Go module proxy by
//! `hack/controlplane/build.sh` and cached outside the tree.
//!
//! Used by the integration tests (one control plane per test binary), and through the
//! `envtest` binary by `hack/run.sh` and `hack/bench.sh` when no cluster is given. It is a
//! crate of its own so that none of it reaches the product binary or its image, and a
//! plain `cargo test` of the product never starts a Go build.

mod certs;
mod process;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use serde::Deserialize as _;

use process::Managed;

/// Everything that can go wrong while starting a control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the control-plane binaries failed: {0}")]
    Build(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("finding a free port: {0}")]
    Port(std::io::Error),
    #[error("starting {name}: {source}")]
    Spawn {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("{name} exited early ({status}); its log is {log}")]
    Exited {
        name: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("kube-apiserver was not ready after {0:?}")]
    NotReady(Duration),
    #[error("reading the admin kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("installing CRD {name}: {source}")]
    InstallCrd { name: String, source: kube::Error },
    #[error("waiting for CRD {0} to be established")]
    CrdNotEstablished(String),
    #[error("reading CRDs from {path}: {reason}")]
    ReadCrds { path: PathBuf, reason: String },
}

/// How to start a control plane.
#[derive(Debug, Default)]
pub struct Options {
    /// Where certificates, data and logs go. A temporary directory, removed on stop,
    /// when `None`.
    pub dir: Option<PathBuf>,
    /// CRDs installed before kube-controller-manager starts, so that its garbage
    /// collector watches them from the first moment instead of after its next resync.
    pub crds: Vec<CustomResourceDefinition>,
    /// Make the ServiceAccount issuer the API server's own URL, so that its discovery
    /// document and keys are where OpenID discovery looks for them (as a cluster whose
    /// tokens another one trusts must publish them); `https://kubernetes.default.svc.cluster.local`
    /// otherwise.
    pub issuer_at_own_url: bool,
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    bin: PathBuf,
    dir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    processes: Vec<Managed>,
    kubeconfig: PathBuf,
    server: String,
}

impl ControlPlane {
    /// Builds the binaries if the cache is cold, then starts etcd, kube-apiserver and
    /// kube-controller-manager, and waits until the apiserver is ready.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let bin = binaries()?;
        let (tempdir, dir) = match options.dir {
            Some(dir) => (None, dir),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("oauth-operator-envtest-")
                    .tempdir()
                    .map_err(|source| Error::Write {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        // Processes run inside `dir`, so every path handed to them must be absolute.
        let dir = std::fs::canonicalize(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;

        let pki = certs::generate()?;
        let file = |name: &str, content: &str| -> Result<PathBuf, Error> {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        };
        let ca = file("ca.crt", &pki.ca_cert)?;
        let serving_cert = file("apiserver.crt", &pki.serving_cert)?;
        let serving_key = file("apiserver.key", &pki.serving_key)?;
        let sa_key = file("sa.key", &pki.service_account_key)?;
        let sa_pub = file("sa.pub", &pki.service_account_pub)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = file("kubeconfig", &admin_kubeconfig(&server, &pki))?;

        let mut cp = ControlPlane {
            bin: bin.clone(),
            dir: dir.clone(),
            _tempdir: tempdir,
            processes: Vec::new(),
            kubeconfig,
            server: server.clone(),
        };

        let issuer = if options.issuer_at_own_url {
            server.clone()
        } else {
            "https://kubernetes.default.svc.cluster.local".to_string()
        };
        // Where the API server serves its keys, whatever the issuer's name.
        let jwks_uri = format!("{server}/openid/v1/jwks");
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        cp.processes.push(Managed::spawn(
            "etcd",
            &bin.join("etcd"),
            &[
                "--name=default".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                // A throwaway cluster: durability is not worth the fsync latency.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &dir,
        )?);

        cp.processes.push(Managed::spawn(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                // These machines have no default route, so the apiserver cannot guess it.
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", dir.join("apiserver-certs").display()),
                format!("--tls-cert-file={}", serving_cert.display()),
                format!("--tls-private-key-file={}", serving_key.display()),
                format!("--client-ca-file={}", ca.display()),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-issuer={issuer}"),
                // Discovery's jwks_uri: the API server would otherwise name its advertised
                // address on the default port.
                format!("--service-account-jwks-uri={jwks_uri}"),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--allow-privileged=true".into(),
                "--v=0".into(),
            ],
            &dir,
        )?);

        let timeout = Duration::from_secs(180);
        let client = cp.wait_ready(timeout).await?;

        install_crds(&client, &options.crds).await?;

        cp.processes.push(Managed::spawn(
            "kube-controller-manager",
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", cp.kubeconfig.display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller".into(),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", ca.display()),
                "--v=0".into(),
            ],
            &dir,
        )?);
        // Give it a moment to fail fast on bad flags, so errors surface here.
        tokio::time::sleep(Duration::from_millis(500)).await;
        cp.check_alive()?;
        Ok(cp)
    }

    /// Stops one process (`etcd`, `kube-apiserver`, `kube-controller-manager`) to inject
    /// a fault; [`ControlPlane::restart_process`] starts it again. Unknown names do nothing.
    pub fn stop_process(&mut self, name: &str) {
        for p in self.processes.iter_mut().filter(|p| p.name == name) {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Starts a stopped process again with its original flags (same ports, same data),
    /// and waits until the API server answers again.
    pub async fn restart_process(&mut self, name: &str) -> Result<(), Error> {
        for p in self.processes.iter_mut().filter(|p| p.name == name) {
            p.respawn()?;
        }
        self.wait_ready(Duration::from_secs(120)).await.map(|_| ())
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The kubectl built with the control plane.
    pub fn kubectl(&self) -> PathBuf {
        self.bin.join("kubectl")
    }

    /// The CA that signed the API server's serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The directory with certificates, data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client with admin rights.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<kube::Client, Error> {
        let started = Instant::now();
        let client = self.client().await?;
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz").body(Vec::new());
            if let Ok(req) = req
                && let Ok(body) = client.request_text(req).await
                && body.trim() == "ok"
            {
                return Ok(client);
            }
            if started.elapsed() > timeout {
                return Err(Error::NotReady(timeout));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        for p in &mut self.processes {
            p.check_alive()?;
        }
        Ok(())
    }

    /// Stops every process, newest first, each with SIGTERM then, after a grace period,
    /// SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(10));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A kube client for the given kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kc = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))
}

/// Applies CRDs (server-side) and waits until each is established.
pub async fn install_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("oauth-operator-envtest").force();
    for crd in crds {
        let name = kube::ResourceExt::name_any(crd);
        api.patch(&name, &pp, &Patch::Apply(crd))
            .await
            .map_err(|source| Error::InstallCrd {
                name: name.clone(),
                source,
            })?;
    }
    for crd in crds {
        let name = kube::ResourceExt::name_any(crd);
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .map_err(|_| Error::CrdNotEstablished(name.clone()))?
            .map_err(|_| Error::CrdNotEstablished(name.clone()))?;
    }
    Ok(())
}

/// The CRDs of a multi-document YAML file such as `crds/crds.yaml`.
pub fn read_crds(path: &Path) -> Result<Vec<CustomResourceDefinition>, Error> {
    let fail = |reason: String| Error::ReadCrds {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut crds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| fail(e.to_string()))?;
        // A file may end in `---` or hold comments only between documents.
        if value.is_null() {
            continue;
        }
        crds.push(serde_yaml_ng::from_value(value).map_err(|e| fail(e.to_string()))?);
    }
    Ok(crds)
}

/// Where the binaries are: `$OAUTH_OPERATOR_CONTROLPLANE_BIN`, or the cache that
/// `hack/controlplane/build.sh` fills (building on first use).
fn binaries() -> Result<PathBuf, Error> {
    if let Ok(dir) = std::env::var("OAUTH_OPERATOR_CONTROLPLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    // The script lives with the project's other tooling, one level up from this crate.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/controlplane/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Build(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(Error::Build(format!(
            "{} exited with {}",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| Error::Build("build.sh printed no directory".into()))
}

/// A port that was free a moment ago, and that this process has not handed out before:
/// the kernel may give a just-released port to the next `bind(0)`, and two of our
/// processes told the same port would race for it. So every process the tests start
/// listens on a port from here, never on port 0. (Another program on the machine can
/// still take the port in the short window before ours binds it; that fails at start-up.)
pub fn free_port() -> Result<u16, Error> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").map_err(Error::Port)?;
        let port = l.local_addr().map_err(Error::Port)?.port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
}

fn admin_kubeconfig(server: &str, pki: &certs::Pki) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: envtest
  context:
    cluster: envtest
    user: admin
current-context: envtest
",
        ca = b64(&pki.ca_cert),
        cert = b64(&pki.admin_cert),
        key = b64(&pki.admin_key),
    )
}
