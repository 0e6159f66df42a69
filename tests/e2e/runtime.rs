//! The chart's pods under a real OCI runtime: the image hack/image.sh builds, unpacked by
//! umoci and run by runc (both Debian's), with each container exactly as `helm template`
//! renders it, translated the way a kubelet does: the rendered command and args (with
//! `$(VAR)` expanded), the environment with the downward API filled in
//! (`POD_NAME`, `POD_NAMESPACE`) and the `KUBERNETES_SERVICE_*` variables, the security
//! context (user and group, read-only root, no capability, no privilege escalation, the
//! RuntimeDefault seccomp profile: containers-common's, as CRI-O and podman apply it), the
//! memory limit, and a TokenRequest token of the chart's ServiceAccount with the CA and
//! namespace at the standard path.
//!
//! Networking is the host's, as a `hostNetwork` pod's, and everything talks over
//! 127.0.0.1 only: no bridge, no address outside the loopback. So two replicas of one
//! Deployment cannot both bind its port here as they would in pods of their own; the
//! second controller replica comes from a rendering that differs in
//! `controller.healthPort` alone (checked).
//!
//! Against the real control plane: every probe the chart declares passes on its port,
//! each container runs as 65532 with no capability, no new privileges and seccomp
//! filtering, and has no shell; a client applied with kubectl becomes Ready, a token is
//! issued through the server container's port, and killing the controller that holds
//! the Lease hands the work to the other.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

use crate::chart::{RELEASE, documents, helm, repo, str_at, strings, template};
use crate::support::{Ctx, TestFn, eventually};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![("the_charts_pods_run_under_runc_exactly_as_rendered", |c| {
        Box::pin(pods(c))
    })]
}

/// containers-common's default profile (Debian's golang-github-containers-common, as
/// hack/tools/runtime.sh unpacks it).
fn seccomp_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("oauth-operator/containers-common/usr/share/containers/seccomp.json")
}
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why this machine cannot run containers, if it cannot: not root, or no runc. In CI
/// (`CI` set) that is a failure, never a skip.
fn runtime_missing() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("runc needs root here (no rootless setup)".into());
    }
    for tool in ["runc", "umoci"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("{tool} is not installed (hack/tools/runtime.sh)"));
        }
    }
    if !seccomp_path().is_file() {
        return Some(format!(
            "{} is missing (hack/tools/runtime.sh)",
            seccomp_path().display()
        ));
    }
    None
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Builds the image from this tree (hack/image.sh: a no-op build when warm) and unpacks
/// it; the bundle's config.json is umoci's translation of the image config.
fn unpacked_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let archive = dir.join("oauth-operator.oci.tar");
    let report = run(Command::new(repo().join("hack/image.sh")).arg(&archive))?;
    eprintln!("{report}");
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout)?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout))?;
    let index: Value = serde_json::from_str(&std::fs::read_to_string(layout.join("index.json"))?)?;
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .context("the image's tag")?
        .to_string();
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle))?;
    Ok(bundle)
}

/// The OCI seccomp profile a RuntimeDefault pod gets for a container with no capability
/// on amd64: containers-common's rules whose conditions hold for that.
fn runtime_default_seccomp() -> anyhow::Result<Value> {
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(seccomp_path())?)?;
    let arch_ok = |cond: &Value| {
        cond["arches"]
            .as_array()
            .is_none_or(|a| a.iter().any(|x| x == "amd64"))
    };
    let mut syscalls = Vec::new();
    for rule in profile["syscalls"].as_array().context("syscalls")? {
        let includes = &rule["includes"];
        let excludes = &rule["excludes"];
        // Rules only for holders of a capability do not apply: the container has none.
        let needs_caps = includes["caps"].as_array().is_some_and(|c| !c.is_empty());
        let excluded_arch = excludes["arches"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "amd64"));
        if needs_caps || !arch_ok(includes) || excluded_arch {
            continue;
        }
        let mut out = json!({"names": rule["names"], "action": rule["action"]});
        if let Some(args) = rule["args"].as_array().filter(|a| !a.is_empty()) {
            out["args"] = json!(args);
        }
        if let Some(errno) = rule["errnoRet"].as_u64() {
            out["errnoRet"] = json!(errno);
        }
        syscalls.push(out);
    }
    Ok(json!({
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }))
}

/// `$(NAME)` in a command or argument, replaced as the kubelet does from the container's
/// environment (an unknown name stays as written).
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// "512Mi" and the like, in bytes.
fn quantity(q: &str) -> Option<u64> {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, n) in units {
        if let Some(v) = q.strip_suffix(suffix) {
            return v.parse::<u64>().ok().map(|v| v * n);
        }
    }
    q.parse().ok()
}

/// One rendered pod's one container as the kubelet would run it.
struct PodSpec<'a> {
    pod: &'a Yaml,
    pod_name: String,
    namespace: String,
    api_port: u16,
    service_account_dir: PathBuf,
    rootfs: PathBuf,
}

fn oci_config(base: &Value, spec: &PodSpec<'_>, seccomp: &Value) -> anyhow::Result<Value> {
    let container = &spec.pod["containers"][0];
    let pod_sc = &spec.pod["securityContext"];
    let sc = &container["securityContext"];
    let pick = |key: &str| {
        if sc[key].is_null() {
            &pod_sc[key]
        } else {
            &sc[key]
        }
    };

    // The environment: the image's, the kubelet's service variables, the container's.
    let mut env: Vec<(String, String)> = base["process"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("HOSTNAME".into(), spec.pod_name.clone()));
    env.push(("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()));
    env.push(("KUBERNETES_SERVICE_PORT".into(), spec.api_port.to_string()));
    for e in container["env"].as_sequence().into_iter().flatten() {
        let name = str_at(e, &["name"]).to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else {
            match str_at(e, &["valueFrom", "fieldRef", "fieldPath"]) {
                "metadata.name" => spec.pod_name.clone(),
                "metadata.namespace" => spec.namespace.clone(),
                other => bail!("env {name}: a valueFrom this test does not fill: {other:?}"),
            }
        };
        env.push((name, value));
    }

    let mut args: Vec<String> = match container["command"].as_sequence() {
        Some(cmd) => cmd
            .iter()
            .filter_map(|c| c.as_str())
            .map(str::to_string)
            .collect(),
        None => base["process"]["args"]
            .as_array()
            .context("the image's entrypoint")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
    };
    args.extend(strings(&container["args"]).into_iter().map(str::to_string));
    let args: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();

    let mut config = base.clone();
    let process = &mut config["process"];
    process["terminal"] = json!(false);
    process["args"] = json!(args);
    process["env"] = json!(
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    );
    process["cwd"] = json!("/");
    let uid = pick("runAsUser").as_u64().context("runAsUser")?;
    let gid = pick("runAsGroup").as_u64().context("runAsGroup")?;
    process["user"] = json!({"uid": uid, "gid": gid, "additionalGids": [gid]});
    process["noNewPrivileges"] = json!(sc["allowPrivilegeEscalation"].as_bool() == Some(false));
    let dropped_all = strings(&sc["capabilities"]["drop"]).contains(&"ALL");
    ensure!(dropped_all, "the container keeps capabilities: {sc:?}");
    let added: Vec<String> = strings(&sc["capabilities"]["add"])
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    process["capabilities"] = json!({
        "bounding": added, "effective": added, "permitted": added,
        "inheritable": [], "ambient": [],
    });

    config["root"] = json!({
        "path": spec.rootfs,
        "readonly": sc["readOnlyRootFilesystem"].as_bool() == Some(true),
    });
    config["hostname"] = json!(spec.pod_name);

    let mut mounts: Vec<Value> = config["mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["destination"] != SA_DIR)
        .collect();
    if spec.pod["automountServiceAccountToken"].as_bool() != Some(false) {
        mounts.push(json!({
            "destination": SA_DIR, "type": "bind", "source": spec.service_account_dir,
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
        }));
    }
    if let Some(v) = container["volumeMounts"]
        .as_sequence()
        .and_then(|v| v.first())
    {
        bail!("a volume mount this test does not provide: {v:?}");
    }
    config["mounts"] = json!(mounts);

    let linux = &mut config["linux"];
    // The host's network (see the module documentation); a mount, PID, IPC and UTS
    // namespace of its own, and no user namespace (root runs runc, as a kubelet does).
    linux["namespaces"] = json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
    ]);
    if let Some(l) = linux.as_object_mut() {
        l.remove("uidMappings");
        l.remove("gidMappings");
    }
    let seccomp_type = str_at(pick("seccompProfile"), &["type"]);
    ensure!(
        seccomp_type == "RuntimeDefault",
        "seccompProfile {seccomp_type:?}"
    );
    linux["seccomp"] = seccomp.clone();
    if let Some(limit) = container["resources"]["limits"]["memory"]
        .as_str()
        .and_then(quantity)
    {
        linux["resources"] = json!({"memory": {"limit": limit}});
    }
    linux["cgroupsPath"] = json!(format!("/oauth-operator-e2e/{}", spec.pod_name));
    Ok(config)
}

/// A container run by `runc run` (in the foreground of its own child process, so its
/// output goes to a log file); killed and deleted when dropped.
struct Container {
    id: String,
    child: Child,
    log: PathBuf,
}

impl Container {
    fn start(id: &str, bundle: &Path, log: PathBuf) -> anyhow::Result<Self> {
        let out = std::fs::File::create(&log)?;
        let child = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Container {
            id: id.to_string(),
            child,
            log,
        })
    }

    /// The container's first process on the host.
    fn pid(&self) -> anyhow::Result<u32> {
        let state: Value =
            serde_json::from_str(&run(Command::new("runc").args(["state", &self.id]))?)?;
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .context("runc state has no pid")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn kill(&mut self) {
        let _ = Command::new("runc")
            .args(["kill", &self.id, "KILL"])
            .output();
        let _ = self.child.wait();
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `/proc/<pid>/status` lines that show what a process may do.
fn privileges(pid: u32) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .filter(|l| {
            [
                "Uid:",
                "Gid:",
                "CapEff:",
                "CapPrm:",
                "CapBnd:",
                "NoNewPrivs:",
                "Seccomp:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// A directory with what the kubelet mounts at [`SA_DIR`]: a TokenRequest token of
/// `service_account`, the cluster's CA and the namespace.
fn service_account_dir(ctx: &Ctx, dir: &Path, service_account: &str) -> anyhow::Result<PathBuf> {
    let out = ctx.kubectl(&["create", "token", service_account, "--duration=1h"], None)?;
    ensure!(
        out.status.success(),
        "create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    ctx.secret("a ServiceAccount token", &token);
    let path = dir.join(service_account);
    std::fs::create_dir_all(&path)?;
    std::fs::write(path.join("token"), token)?;
    std::fs::copy(ctx.env.control_plane.ca_file(), path.join("ca.crt"))?;
    std::fs::write(path.join("namespace"), &ctx.ns)?;
    // Readable by the container's user, as the kubelet's projected volume is.
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&path))?;
    Ok(path)
}

/// Each probe of the rendered container (HTTP GET on a named or numbered port) answers
/// 2xx on 127.0.0.1.
async fn probes_pass(ctx: &Ctx, container: &Yaml, what: &str) -> anyhow::Result<()> {
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        ensure!(!get.is_null(), "{what}: no {probe}");
        let port = match &get["port"] {
            Yaml::Number(n) => n.as_u64().context("port")?,
            Yaml::String(name) => container["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_u64())
                .with_context(|| format!("{what}: no port named {name}"))?,
            other => bail!("{what}: {probe} port {other:?}"),
        };
        let url = format!("http://127.0.0.1:{port}{}", str_at(get, &["path"]));
        eventually(
            Duration::from_secs(60),
            &format!("{what} {probe} {url}"),
            || async {
                let res = ctx.http.get(&url).send().await?;
                ensure!(res.status().is_success(), "{}", res.status());
                Ok(())
            },
        )
        .await?;
    }
    Ok(())
}

/// The rendered Deployments, by component.
fn deployments(yaml: &str) -> anyhow::Result<(Yaml, Yaml, String)> {
    let mut controller = None;
    let mut server = None;
    let mut rest = String::new();
    for doc in documents(yaml)? {
        match (
            str_at(&doc, &["kind"]),
            str_at(&doc, &["metadata", "labels", "app.kubernetes.io/component"]),
        ) {
            ("Deployment", "controller") => controller = Some(doc),
            ("Deployment", "server") => server = Some(doc),
            // Nothing schedules or serves them here: the kubelet's part is this test's.
            ("Deployment" | "CustomResourceDefinition", _) => {}
            _ => {
                rest.push_str("---\n");
                rest.push_str(&serde_yaml_ng::to_string(&doc)?);
            }
        }
    }
    Ok((
        controller.context("no controller Deployment")?,
        server.context("no server Deployment")?,
        rest,
    ))
}

async fn pods(ctx: Ctx) -> anyhow::Result<()> {
    if let Some(why) = runtime_missing() {
        ensure!(
            std::env::var_os("CI").is_none(),
            "the container runtime cannot start in CI: {why}"
        );
        eprintln!("SKIPPED the_charts_pods_run_under_runc_exactly_as_rendered: {why}");
        return Ok(());
    }
    let helm = helm().await?;
    let server_port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{server_port}");
    let render = |health_port: u16| {
        vec![
            format!("issuer={issuer}"),
            format!("watchNamespaces={{{}}}", ctx.ns),
            format!("server.port={server_port}"),
            format!("controller.healthPort={health_port}"),
        ]
    };
    let health = [envtest::free_port()?, envtest::free_port()?];
    let first = template(&helm, &ctx.ns, &render(health[0])).await?;
    let second = template(&helm, &ctx.ns, &render(health[1])).await?;
    let (controller, server, manifests) = deployments(&first)?;
    let (other_controller, _, _) = deployments(&second)?;
    let same = serde_yaml_ng::to_string(&controller)?
        .replace(&health[0].to_string(), &health[1].to_string());
    ensure!(
        same == serde_yaml_ng::to_string(&other_controller)?,
        "the two controller renderings differ beyond the health port"
    );

    // The chart's ServiceAccounts, RBAC, guard, Services and budgets, for real.
    ctx.apply(&manifests)?;
    let result = run_pods(&ctx, &controller, &other_controller, &server, server_port).await;
    // Cluster-scoped objects outlive the namespace.
    let _ = ctx.kubectl(
        &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
        Some(&manifests),
    );
    result
}

async fn run_pods(
    ctx: &Ctx,
    controller: &Yaml,
    other_controller: &Yaml,
    server: &Yaml,
    server_port: u16,
) -> anyhow::Result<()> {
    let dir = ctx.workdir.path().join("runtime");
    std::fs::create_dir_all(&dir)?;
    let bundle = unpacked_image(&dir)?;
    let rootfs = bundle.join("rootfs");
    ensure!(
        !rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/apt-get").exists(),
        "the image has a shell or a package manager"
    );
    let base: Value = serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json"))?)?;
    let seccomp = runtime_default_seccomp()?;
    let api_port: u16 = ctx
        .env
        .control_plane
        .server()
        .rsplit(':')
        .next()
        .context("API server port")?
        .parse()?;

    let mut containers = Vec::new();
    let pods = [
        ("controller-a", controller),
        ("controller-b", other_controller),
        ("server-a", server),
    ];
    for (suffix, deployment) in pods {
        let pod = &deployment["spec"]["template"]["spec"];
        let service_account = str_at(pod, &["serviceAccountName"]);
        let spec = PodSpec {
            pod,
            pod_name: format!("{RELEASE}-oauth-operator-{suffix}"),
            namespace: ctx.ns.clone(),
            api_port,
            service_account_dir: service_account_dir(ctx, &dir, service_account)?,
            rootfs: rootfs.clone(),
        };
        let config = oci_config(&base, &spec, &seccomp)?;
        let pod_bundle = dir.join(suffix);
        std::fs::create_dir_all(&pod_bundle)?;
        std::fs::write(
            pod_bundle.join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        // Unique per test run: runc's state is machine-wide.
        let id = format!("{}-{suffix}", ctx.ns);
        let log = ctx.workdir.path().join(format!("container-{suffix}.log"));
        containers.push((
            suffix,
            spec.pod_name.clone(),
            Container::start(&id, &pod_bundle, log)?,
        ));
    }

    for ((suffix, _, c), (_, deployment)) in containers.iter().zip(pods) {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        if let Err(e) = probes_pass(ctx, container, suffix).await {
            let state = Command::new("runc").args(["state", &c.id]).output()?;
            bail!(
                "{e:#}\nrunc state: {}{}\n{suffix} log:\n{}",
                String::from_utf8_lossy(&state.stdout),
                String::from_utf8_lossy(&state.stderr),
                c.log_tail()
            );
        }
        let p = privileges(c.pid()?)?;
        let field = |name: &str| {
            p.lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        ensure!(
            field("Uid:") == "65532 65532 65532 65532" && field("Gid:").starts_with("65532 "),
            "{suffix}: {p}"
        );
        ensure!(
            ["CapEff:", "CapPrm:", "CapBnd:"]
                .iter()
                .all(|f| field(f) == "0000000000000000"),
            "{suffix}: {p}"
        );
        ensure!(
            field("NoNewPrivs:") == "1" && field("Seccomp:") == "2",
            "{suffix}: {p}"
        );
        // No shell to exec into.
        let shell = Command::new("runc")
            .args(["exec", &c.id, "/bin/sh", "-c", "true"])
            .output()?;
        ensure!(!shell.status.success(), "{suffix}: a shell ran");
    }

    // A client applied with kubectl: Ready, and a token through the server container.
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: app\nspec:\n  scopes: [read]\n",
    )?;
    ctx.wait_ready("app").await?;
    let (id, secret) = ctx.credentials("app-credentials").await?;
    let url = format!("http://127.0.0.1:{server_port}");
    let token = eventually(
        Duration::from_secs(20),
        "a token from the server container",
        || async {
            let res = ctx
                .http
                .post(format!("{url}/token"))
                .basic_auth(&id, Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await?;
            let status = res.status();
            let body: Value = res.json().await?;
            ensure!(status.is_success(), "{status} {body}");
            Ok(body["access_token"]
                .as_str()
                .context("access_token")?
                .to_string())
        },
    )
    .await?;
    ctx.secret("an access token", &token);
    let res = ctx
        .http
        .post(format!("{url}/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await?;
    let body: Value = res.json().await?;
    ensure!(body["active"] == true, "introspection: {body}");

    // Failover: kill the container holding the Lease; the other takes over.
    let lease_name = format!("{RELEASE}-oauth-operator-controller");
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> = ctx.api();
    let holder = eventually(Duration::from_secs(30), "a Lease holder", || async {
        let lease = leases.get(&lease_name).await?;
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
            .context("no holder")
    })
    .await?;
    let (suffix, _, leader) = containers
        .iter()
        .position(|(_, name, _)| *name == holder)
        .map(|i| containers.remove(i))
        .with_context(|| format!("the Lease holder {holder} is none of the containers"))?;
    eprintln!("killing the leader, {suffix}");
    drop(leader);
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: after-failover\nspec:\n  scopes: [read]\n",
    )?;
    ctx.wait_ready("after-failover").await.with_context(|| {
        containers
            .iter()
            .map(|(s, _, c)| format!("{s} log:\n{}", c.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let lease = leases.get(&lease_name).await?;
    let now_held = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    ensure!(
        now_held != holder && !now_held.is_empty(),
        "the Lease is still {now_held:?}"
    );
    Ok(())
}
