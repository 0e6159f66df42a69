//! The Helm chart in charts/oauth-operator: it lints, it renders what the API server
//! accepts (server-side dry run, with and without `watchNamespaces`), its Pods meet the
//! restricted profile, applied for real its RBAC and secret guard confine the operator's
//! ServiceAccounts, and both components do their whole job as those ServiceAccounts
//! (tokens from the TokenRequest API) while a forbidden request is refused. Helm comes from hack/tools/helm.sh (built once, cached).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use tokio::process::Command;

use crate::support::{Ctx, TestFn, eventually, verify_token};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("helm_lint_passes", |c| Box::pin(lint(c))),
        ("helm_template_applies_with_server_side_dry_run", |c| {
            Box::pin(template_dry_run(c))
        }),
        ("chart_rbac_and_secret_guard_confine_the_operator", |c| {
            Box::pin(rbac_and_guard(c))
        }),
        ("alerts_and_dashboard_name_only_exported_metrics", |c| {
            Box::pin(monitoring(c))
        }),
    ]
}

const ISSUER: &str = "https://auth.example.test";
/// The release name; the chart's fullname is then `<RELEASE>-oauth-operator`.
pub(crate) const RELEASE: &str = "t";
/// A cold build of helm takes minutes (hack/test.sh builds it before the tests); a
/// cached one returns at once.
const BUILD_LIMIT: Duration = Duration::from_secs(270);
const HELM_LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/oauth-operator")
}

/// Runs `cmd` to completion within `limit` (killed past it), capturing its output.
async fn run(cmd: &mut Command, limit: Duration) -> anyhow::Result<Output> {
    let what = format!("{:?}", cmd.as_std());
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{what}: no answer after {limit:?}"))?
        .with_context(|| format!("running {what}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The helm binary, built by hack/tools/helm.sh on first use.
pub(crate) async fn helm() -> anyhow::Result<PathBuf> {
    let script = repo().join("hack/tools/helm.sh");
    let out = run(&mut Command::new(&script), BUILD_LIMIT)
        .await
        .context("building helm (run hack/tools/helm.sh once to warm its cache)")?;
    ensure!(out.status.success(), "{}: {}", script.display(), text(&out));
    let dir = String::from_utf8(out.stdout)?;
    let helm = PathBuf::from(dir.trim()).join("helm");
    ensure!(
        helm.is_file(),
        "{} did not produce {}",
        script.display(),
        helm.display()
    );
    Ok(helm)
}

/// `helm template` of the chart into namespace `ns`, with `--set` values.
pub(crate) async fn template(helm: &Path, ns: &str, sets: &[String]) -> anyhow::Result<String> {
    let mut cmd = Command::new(helm);
    cmd.args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", ns, "--include-crds"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = run(&mut cmd, HELM_LIMIT).await?;
    ensure!(
        out.status.success(),
        "helm template {sets:?}: {}",
        text(&out)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The rendered documents, without the empty ones.
pub(crate) fn documents(yaml: &str) -> anyhow::Result<Vec<serde_yaml_ng::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

pub(crate) fn str_at<'a>(v: &'a serde_yaml_ng::Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_str().unwrap_or_default()
}

pub(crate) fn strings(v: &serde_yaml_ng::Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default()
}

async fn lint(_ctx: Ctx) -> anyhow::Result<()> {
    let helm = helm().await?;
    let out = run(
        Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(chart())
            .args(["--set", &format!("issuer={ISSUER}")]),
        HELM_LIMIT,
    )
    .await?;
    ensure!(out.status.success(), "helm lint failed: {}", text(&out));

    // Without the one required value the chart refuses, naming it.
    let out = run(Command::new(&helm).arg("lint").arg(chart()), HELM_LIMIT).await?;
    ensure!(
        !out.status.success(),
        "helm lint without issuer passed: {}",
        text(&out)
    );
    ensure!(
        text(&out).contains("issuer"),
        "helm lint without issuer does not mention it: {}",
        text(&out)
    );
    Ok(())
}

async fn template_dry_run(ctx: Ctx) -> anyhow::Result<()> {
    let helm = helm().await?;
    let issuer = format!("issuer={ISSUER}");
    let variants = [
        ("all namespaces", vec![issuer.clone()]),
        (
            "watchNamespaces=[test namespace]",
            vec![issuer.clone(), format!("watchNamespaces={{{}}}", ctx.ns)],
        ),
        (
            "a federated issuer with a private CA",
            vec![
                issuer.clone(),
                "federation.issuers={https://oidc.other-cluster.test}".into(),
                "extraCA.configMap=other-cluster-ca".into(),
            ],
        ),
        (
            "a default policy",
            vec![
                issuer.clone(),
                "policy.default.enforcement=Warn".into(),
                "policy.default.clients.maxAccessTokenLifetimeSeconds=900".into(),
            ],
        ),
    ];
    for (variant, sets) in variants {
        let yaml = template(&helm, &ctx.ns, &sets).await?;
        // Rendered offline, the chart cannot tell an upgrade: the new installation's Enforce.
        ensure!(
            yaml.matches("--audience-ownership=Enforce").count() == 2,
            "{variant}: both components get --audience-ownership=Enforce"
        );
        let policies = documents(&yaml)?
            .into_iter()
            .filter(|d| str_at(d, &["kind"]) == "OAuthClientPolicy")
            .collect::<Vec<_>>();
        if variant == "a default policy" {
            ensure!(
                policies.len() == 1
                    && policies[0]["spec"]["fallback"].as_bool() == Some(true)
                    && policies[0]["spec"]["clients"]["maxAccessTokenLifetimeSeconds"].as_u64()
                        == Some(900),
                "{variant}: the default policy: {policies:?}"
            );
        } else {
            ensure!(policies.is_empty(), "{variant}: no policy unless asked for");
        }
        let out = ctx.kubectl(
            &[
                "apply",
                "--dry-run=server",
                "--request-timeout=60s",
                "-f",
                "-",
            ],
            Some(&yaml),
        )?;
        ensure!(
            out.status.success(),
            "{variant}: kubectl apply --dry-run=server refused the chart: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let docs = documents(&yaml)?;
        let kinds: Vec<&str> = docs.iter().map(|d| str_at(d, &["kind"])).collect();
        let deployments = docs
            .iter()
            .filter(|d| str_at(d, &["kind"]) == "Deployment")
            .collect::<Vec<_>>();
        ensure!(deployments.len() == 2, "{variant}: deployments: {kinds:?}");
        for d in &deployments {
            let pod = &d["spec"]["template"]["spec"];
            let name = str_at(d, &["metadata", "name"]);
            ensure!(
                pod["securityContext"]["runAsNonRoot"].as_bool() == Some(true),
                "{variant}: {name}: pod runAsNonRoot"
            );
            for c in pod["containers"].as_sequence().into_iter().flatten() {
                let sc = &c["securityContext"];
                ensure!(
                    sc["readOnlyRootFilesystem"].as_bool() == Some(true)
                        && sc["runAsNonRoot"].as_bool() == Some(true)
                        && sc["allowPrivilegeEscalation"].as_bool() == Some(false)
                        && strings(&sc["capabilities"]["drop"]) == ["ALL"],
                    "{variant}: {name}: container not restricted: {sc:?}"
                );
            }
        }
        // Both components are told the trusted issuers: the server to verify, the
        // controller to say in a client's status whether its issuer is trusted.
        let federated = sets.iter().any(|s| s.starts_with("federation."));
        for d in &deployments {
            let container = &d["spec"]["template"]["spec"]["containers"][0];
            let args = strings(&container["args"]);
            let trusts: Vec<&&str> = args
                .iter()
                .filter(|a| a.starts_with("--federated-issuer"))
                .collect();
            let expected: &[&str] = if federated {
                &["--federated-issuer=https://oidc.other-cluster.test"]
            } else {
                &[]
            };
            ensure!(
                trusts == expected.iter().collect::<Vec<_>>(),
                "{variant}: {}: args {args:?}",
                str_at(d, &["metadata", "name"])
            );
        }
        if federated {
            ensure!(
                yaml.contains("--extra-ca-file=/etc/oauth-operator/extra-ca/ca.crt")
                    && yaml.contains("name: other-cluster-ca"),
                "{variant}: the CA is not mounted for the server"
            );
        }
        for needle in ["readOnlyRootFilesystem: true", "runAsNonRoot: true"] {
            ensure!(yaml.contains(needle), "{variant}: no {needle:?}");
        }

        // The token server never gets to read Secrets other than the signing keys.
        let server_roles = docs.iter().filter(|d| {
            matches!(str_at(d, &["kind"]), "Role" | "ClusterRole")
                && str_at(d, &["metadata", "labels", "app.kubernetes.io/component"]) == "server"
        });
        let mut secret_rules = 0;
        for role in server_roles {
            for rule in role["rules"].as_sequence().into_iter().flatten() {
                if !strings(&rule["resources"]).contains(&"secrets") {
                    continue;
                }
                secret_rules += 1;
                let reads = strings(&rule["verbs"])
                    .into_iter()
                    .any(|v| matches!(v, "get" | "list" | "watch" | "*"));
                ensure!(
                    !reads || !strings(&rule["resourceNames"]).is_empty(),
                    "{variant}: token server may read any Secret: {} {rule:?}",
                    str_at(role, &["metadata", "name"])
                );
            }
        }
        ensure!(
            secret_rules >= 2,
            "{variant}: token server Secret rules missing"
        );

        // Only the platform's policies and the namespaces' labels are read cluster-wide (both
        // cluster-scoped, read only); everything else is confined to the watched namespaces.
        for role in docs.iter().filter(|d| {
            str_at(d, &["kind"]) == "ClusterRole"
                && str_at(d, &["metadata", "name"]).ends_with("-controller-policies")
        }) {
            for rule in role["rules"].as_sequence().into_iter().flatten() {
                let resources = strings(&rule["resources"]);
                ensure!(
                    resources
                        .iter()
                        .all(|r| matches!(*r, "oauthclientpolicies" | "namespaces"))
                        && strings(&rule["verbs"]) == ["get", "list", "watch"],
                    "{variant}: the policies role grants more than reading: {rule:?}"
                );
            }
        }
        if variant.starts_with("watchNamespaces") {
            let cluster_wide: Vec<&str> = docs
                .iter()
                .filter(|d| {
                    (str_at(d, &["kind"]) == "ClusterRoleBinding"
                        || (str_at(d, &["kind"]) == "ClusterRole"
                            && !str_at(d, &["metadata", "labels", "app.kubernetes.io/component"])
                                .is_empty()))
                        && !str_at(d, &["metadata", "name"]).ends_with("-controller-policies")
                })
                .map(|d| str_at(d, &["metadata", "name"]))
                .collect();
            ensure!(
                cluster_wide.is_empty(),
                "{variant}: cluster-wide RBAC: {cluster_wide:?}"
            );
        }
    }
    Ok(())
}

/// `kubectl auth can-i` as `user`: true for "yes".
fn can_i(ctx: &Ctx, user: &str, args: &[&str]) -> anyhow::Result<bool> {
    let mut all = vec!["auth", "can-i", "--request-timeout=30s"];
    all.extend_from_slice(args);
    let as_user = format!("--as={user}");
    all.push(&as_user);
    let out = ctx.kubectl(&all, None)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
}

/// Creates a Secret as `user` in a server-side dry run: it goes through authorization and
/// admission, and writes nothing.
fn create_secret_as(ctx: &Ctx, user: &str, name: &str, managed: bool) -> anyhow::Result<Output> {
    let as_user = format!("--as={user}");
    ctx.kubectl(
        &[
            "create",
            "--dry-run=server",
            "--request-timeout=30s",
            &as_user,
            "-f",
            "-",
        ],
        Some(&secret(name, managed)),
    )
}

/// A Secret manifest, labelled as the operator's own or not.
fn secret(name: &str, managed: bool) -> String {
    let labels = if managed {
        "  labels:\n    app.kubernetes.io/managed-by: oauth-operator\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{labels}stringData:\n  a: b\n"
    )
}

async fn rbac_and_guard(ctx: Ctx) -> anyhow::Result<()> {
    let helm = helm().await?;
    let yaml = template(
        &helm,
        &ctx.ns,
        &[
            format!("issuer={ISSUER}"),
            format!("watchNamespaces={{{}}}", ctx.ns),
        ],
    )
    .await?;
    // The RBAC and the guard for real; no Deployments (nothing would run them) and no
    // CRDs (the test control plane has them).
    let wanted = [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    let mut manifests = String::new();
    for doc in documents(&yaml)? {
        if wanted.contains(&str_at(&doc, &["kind"])) {
            manifests.push_str("---\n");
            manifests.push_str(&serde_yaml_ng::to_string(&doc)?);
        }
    }
    let mut result = confined(&ctx, &manifests).await;
    if result.is_ok() {
        result = run_as_service_accounts(&ctx).await;
    }
    // The cluster-scoped objects outlive the namespace: remove them whatever happened.
    let _ = ctx.kubectl(
        &[
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "--request-timeout=30s",
            "-f",
            "-",
        ],
        Some(&manifests),
    );
    result
}

async fn confined(ctx: &Ctx, manifests: &str) -> anyhow::Result<()> {
    ctx.apply(manifests)?;
    let ns = ctx.ns.as_str();
    let controller = format!("system:serviceaccount:{ns}:{RELEASE}-oauth-operator-controller");
    let server = format!("system:serviceaccount:{ns}:{RELEASE}-oauth-operator-server");
    let signing = format!("secrets/{RELEASE}-oauth-operator-signing-keys");
    let upstream = format!("secrets/{RELEASE}-oauth-operator-upstream-secrets");

    let (c, s) = (controller.as_str(), server.as_str());
    let expectations: [(&str, [&str; 4], bool); 23] = [
        (c, ["list", "secrets", "-n", ns], true),
        // Outside watchNamespaces, nothing.
        (c, ["list", "secrets", "-n", "default"], false),
        (c, ["create", "secrets", "-n", "default"], false),
        (
            c,
            ["list", "oauthclients.oauth-operator.dev", "-n", "default"],
            false,
        ),
        // The token server reads only the signing keys, and may only create Secrets.
        (s, ["get", signing.as_str(), "-n", ns], true),
        (s, ["get", "secrets/someone-elses", "-n", ns], false),
        // And the upstream providers' client secrets, by name.
        (s, ["get", upstream.as_str(), "-n", ns], true),
        (c, ["get", upstream.as_str(), "-n", "default"], false),
        (s, ["list", "secrets", "-n", ns], false),
        (s, ["create", "secrets", "-n", ns], true),
        (s, ["update", "secrets", "-n", ns], false),
        (s, ["delete", "secrets", "-n", ns], false),
        // Users are read, never written, by the token server; grants created and
        // updated one by one, never listed or deleted.
        (
            s,
            ["watch", "oauthusers.oauth-operator.dev", "-n", ns],
            true,
        ),
        (
            s,
            ["update", "oauthusers.oauth-operator.dev", "-n", ns],
            false,
        ),
        (
            s,
            ["watch", "oauthupstreams.oauth-operator.dev", "-n", ns],
            true,
        ),
        (
            s,
            ["create", "oauthgrants.oauth-operator.dev", "-n", ns],
            true,
        ),
        (
            s,
            ["list", "oauthgrants.oauth-operator.dev", "-n", ns],
            false,
        ),
        (
            s,
            ["delete", "oauthgrants.oauth-operator.dev", "-n", ns],
            false,
        ),
        // The controller collects expired grants.
        (
            c,
            ["delete", "oauthgrants.oauth-operator.dev", "-n", ns],
            true,
        ),
        // OAuthResources are the API owners': both components read them, neither
        // writes one (the controller writes only their status).
        (
            s,
            ["watch", "oauthresources.oauth-operator.dev", "-n", ns],
            true,
        ),
        (
            s,
            ["update", "oauthresources.oauth-operator.dev", "-n", ns],
            false,
        ),
        (
            c,
            ["watch", "oauthresources.oauth-operator.dev", "-n", ns],
            true,
        ),
        (
            c,
            ["update", "oauthresources.oauth-operator.dev", "-n", ns],
            false,
        ),
    ];
    for (user, args, want) in &expectations {
        let (user, args, want) = (*user, args.as_slice(), *want);
        // RBAC reaches the authorizer's cache within moments of the apply.
        eventually(
            Duration::from_secs(20),
            &format!("can-i {args:?} as {user} == {want}"),
            || async move {
                let got = can_i(ctx, user, args)?;
                ensure!(got == want, "got {got}");
                Ok(())
            },
        )
        .await?;
    }

    // The guard: unlabelled Secrets are refused to the controller and the token server,
    // labelled ones pass.
    for user in [controller.as_str(), server.as_str()] {
        // The policy takes effect once the API server has loaded it.
        eventually(
            Duration::from_secs(30),
            &format!("unlabelled Secret refused to {user}"),
            || async move {
                let out = create_secret_as(ctx, user, "unlabelled", false)?;
                let err = String::from_utf8_lossy(&out.stderr);
                ensure!(!out.status.success(), "created");
                ensure!(
                    err.contains("ValidatingAdmissionPolicy")
                        && err.contains("app.kubernetes.io/managed-by=oauth-operator"),
                    "refused, but not by the guard: {err}"
                );
                Ok(())
            },
        )
        .await?;
        let out = create_secret_as(ctx, user, "labelled", true)?;
        if !out.status.success() {
            bail!(
                "labelled Secret refused to {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Everybody else is left alone.
    let out = ctx.kubectl(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&secret("admins", false)),
    )?;
    ensure!(
        out.status.success(),
        "the guard refused an admin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A kubeconfig for the test control plane that authenticates as `service_account` with
/// a token from the TokenRequest API.
async fn service_account_kubeconfig(ctx: &Ctx, service_account: &str) -> anyhow::Result<PathBuf> {
    let out = ctx.kubectl(&["create", "token", service_account, "--duration=1h"], None)?;
    ensure!(out.status.success(), "create token: {}", text(&out));
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    let admin: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
        ctx.env.control_plane.kubeconfig(),
    )?)?;
    let cluster = &admin["clusters"][0]["cluster"];
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: {}}}\ncurrent-context: c\n",
        str_at(cluster, &["server"]),
        str_at(cluster, &["certificate-authority-data"]),
        ctx.ns,
    );
    let path = ctx
        .workdir
        .path()
        .join(format!("{service_account}.kubeconfig"));
    std::fs::write(&path, config)?;
    Ok(path)
}

/// The controller and the token server, each with only its chart ServiceAccount's rights:
/// a client becomes Ready, gets a token, registers another client, revokes a token; and
/// what the chart does not grant is refused by the API server.
async fn run_as_service_accounts(ctx: &Ctx) -> anyhow::Result<()> {
    let fullname = format!("{RELEASE}-oauth-operator");
    let controller_kc = service_account_kubeconfig(ctx, &format!("{fullname}-controller")).await?;
    let server_kc = service_account_kubeconfig(ctx, &format!("{fullname}-server")).await?;
    let keys = format!("--signing-key-secret={fullname}-signing-keys");
    let lease = format!("--lease-name={fullname}-controller");
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let controller = ctx.start_controller_as(
        &controller_kc,
        &issuer,
        &["--leader-elect=true", &lease, &keys],
    )?;
    // The server reads the upstream Secret of the chart's name, as the Deployment says.
    let upstream = format!("--upstream-secret={fullname}-upstream-secrets");
    let server = ctx
        .start_server_as(&server_kc, port, &[&keys, &upstream])
        .await?;

    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: app\nspec:\n  scopes: [read]\n",
    )?;
    ctx.wait_ready("app").await?;
    let (id, secret) = ctx.credentials("app-credentials").await?;
    let jwt = server
        .issue(&ctx.http, &id, &secret)
        .await
        .context("token as the server's ServiceAccount")?;
    verify_token(&ctx.http, &server, &jwt, &issuer).await?;

    // Revocation: the server writes a RevokedToken.
    let res = ctx
        .http
        .post(format!("{}/revoke", server.url))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", jwt.as_str())])
        .send()
        .await?;
    ensure!(res.status().is_success(), "revoke: {}", res.status());

    // Registration: the server reads the token, claims a slot, creates a client and a
    // Secret of hashes (labelled, as the guard demands).
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: onboarding\nspec:\n  expiresAfter: 1h\n  policy:\n    grantTypes: [client_credentials]\n",
    )?;
    let iat = eventually(Duration::from_secs(30), "initial access token", || async {
        ctx.credentials_key("onboarding-token", "token").await
    })
    .await?;
    // The Secret is written before the verifier the server watches: until the server has
    // seen it, the token is unknown there (401), so ask again until then.
    let registered = eventually(Duration::from_secs(15), "registration", || async {
        let res = ctx
            .http
            .post(format!("{}/register", server.url))
            .bearer_auth(&iat)
            .json(&serde_json::json!({"grant_types": ["client_credentials"]}))
            .send()
            .await?;
        let status = res.status();
        let registered: serde_json::Value = res.json().await?;
        ensure!(status.as_u16() == 201, "register: {status} {registered}");
        Ok(registered)
    })
    .await?;
    let (rid, rsecret) = (
        registered["client_id"].as_str().context("client_id")?,
        registered["client_secret"]
            .as_str()
            .context("client_secret")?,
    );
    server
        .issue(&ctx.http, rid, rsecret)
        .await
        .context("registered client's token")?;

    // Forbidden stays forbidden, asked with the very tokens the components run with.
    for (kubeconfig, what) in [(&server_kc, "server"), (&controller_kc, "controller")] {
        let client = envtest::client_from_kubeconfig(kubeconfig).await?;
        let everywhere: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::all(client.clone());
        match everywhere.list(&Default::default()).await {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => bail!(
                "{what} listed every Secret of the cluster: {:?}",
                other.map(|l| l.items.len())
            ),
        }
    }
    let server_client = envtest::client_from_kubeconfig(&server_kc).await?;
    let here: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(server_client, &ctx.ns);
    match here.get("app-credentials").await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => bail!(
            "the token server read a client's credentials: {:?}",
            other.is_ok()
        ),
    }
    // Match the API server's refusal, not the digits 403, which a random port or id may hold.
    let logs = format!("{}{}", controller.log_text(), server.process().log_text());
    if let Some(line) = logs
        .lines()
        .find(|l| l.to_ascii_lowercase().contains("forbidden"))
    {
        bail!("a component was refused something it needs: {line}");
    }
    Ok(())
}

/// Every `oauth_operator_*` series named in a PromQL text, as its metric family (the
/// name in `# TYPE`: counters lose `_total`, histograms `_bucket`, `_sum`, `_count`).
fn families_named(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("oauth_operator_") {
        let start = i + at;
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - start);
        // Only a name that starts a token (not the middle of another word).
        let starts_token =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if starts_token {
            let name = &text[start..end];
            let family = ["_total", "_bucket", "_sum", "_count", "_created"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_string());
        }
        i = end;
    }
    out
}

/// The families a `/metrics` answer declares (`# TYPE <name> <kind>`), with or without
/// samples yet.
fn families_exported(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The optional PrometheusRule and Grafana dashboard render, and every metric they name is
/// one the running controller and token server export: renaming a metric without
/// them fails here, not silently in someone's Prometheus.
async fn monitoring(ctx: Ctx) -> anyhow::Result<()> {
    let helm = helm().await?;
    let yaml = template(
        &helm,
        &ctx.ns,
        &[
            format!("issuer={ISSUER}"),
            "metrics.serviceMonitor.enabled=true".into(),
            "monitoring.prometheusRule.enabled=true".into(),
            "monitoring.dashboard.enabled=true".into(),
        ],
    )
    .await?;
    let docs = documents(&yaml)?;
    let rule = docs
        .iter()
        .find(|d| str_at(d, &["kind"]) == "PrometheusRule")
        .context("no PrometheusRule")?;
    let mut exprs = String::new();
    let mut alerts = Vec::new();
    for group in rule["spec"]["groups"].as_sequence().into_iter().flatten() {
        for r in group["rules"].as_sequence().into_iter().flatten() {
            alerts.push(str_at(r, &["alert"]).to_string());
            exprs.push_str(str_at(r, &["expr"]));
            exprs.push('\n');
        }
    }
    for wanted in [
        "OAuthOperatorWatchesDisconnected",
        "OAuthOperatorNoLeader",
        "OAuthOperatorClientSecretsExpiringSoon",
        "OAuthOperatorClientSecretsExpired",
        "OAuthOperatorLoadShed",
        "OAuthOperatorLockoutsRising",
    ] {
        ensure!(
            alerts.iter().any(|a| a == wanted),
            "no alert {wanted}: {alerts:?}"
        );
    }
    let dashboard = docs
        .iter()
        .find(|d| {
            str_at(d, &["kind"]) == "ConfigMap"
                && str_at(d, &["metadata", "name"]).ends_with("-dashboard")
        })
        .context("no dashboard ConfigMap")?;
    ensure!(
        str_at(dashboard, &["metadata", "labels", "grafana_dashboard"]) == "1",
        "the dashboard lacks the sidecar's label"
    );
    let json: serde_json::Value =
        serde_json::from_str(str_at(dashboard, &["data", "oauth-operator.json"]))
            .context("the dashboard is not JSON")?;
    let mut queries = String::new();
    for p in json["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            queries.push_str(t["expr"].as_str().unwrap_or_default());
            queries.push('\n');
        }
    }
    ensure!(!queries.is_empty(), "the dashboard has no query");

    // What the binaries export, once each has done some work.
    let (controller, server) = ctx.start_stack().await?;
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: app\nspec:\n  scopes: [read]\n",
    )?;
    ctx.wait_ready("app").await?;
    // A family appears in /metrics once it has a sample: one refusal of each kind.
    let (code, _, _) = server
        .token(
            &ctx.http,
            Some(("app", "wrong")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    ensure!(code == 401, "a wrong secret: {code}");
    let (code, _, _) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", "not.a.jwt"),
            ],
        )
        .await?;
    ensure!(code == 401, "a malformed assertion: {code}");
    let mut exported = families_exported(&server.metrics(&ctx.http).await?);
    let health = eventually(
        Duration::from_secs(10),
        "the controller's health address",
        || async {
            let log = controller.log_text();
            let line = log
                .lines()
                .find(|l| l.contains("controller health and metrics listening"))
                .context("not logged yet")?;
            let at = line.find("127.0.0.1:").context("no address")?;
            let port: String = line[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Ok(format!("http://127.0.0.1:{port}/metrics"))
        },
    )
    .await?;
    let text = ctx.http.get(&health).send().await?.text().await?;
    exported.extend(families_exported(&text));
    for (what, named) in [
        ("the PrometheusRule", families_named(&exprs)),
        ("the dashboard", families_named(&queries)),
    ] {
        ensure!(!named.is_empty(), "{what} names no metric");
        let unknown: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
        ensure!(
            unknown.is_empty(),
            "{what} names metrics the binaries do not export: {unknown:?} (exported: {exported:?})"
        );
    }
    // The secrets gauge counts what the status says (the leader's view).
    ensure!(
        text.contains("oauth_operator_controller_client_secrets{state=\"valid\"} 1"),
        "client_secrets: {text}"
    );
    Ok(())
}
