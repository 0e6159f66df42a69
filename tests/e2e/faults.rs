//! Faults on the real control plane: a controller killed at random points, and two
//! controllers racing on the same clients. Throughout, a watcher samples every credentials
//! Secret and fails the test if any secret value, once written, ever changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, ResourceExt};
use oauth_operator::api::{OAuthClient, OAuthClientVerifier};

use crate::support::{Ctx, Proc, Server, TestFn, eventually};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "controller_killed_20_times_loses_and_regenerates_nothing",
            |c| Box::pin(killed(c)),
        ),
        (
            "racing_controllers_never_make_two_secrets_for_one_entry",
            |c| Box::pin(racing(c)),
        ),
        (
            "api_server_down_a_minute_and_etcd_restarted_lose_nothing",
            |c| Box::pin(outage(c)),
        ),
        ("a_flood_of_bad_requests_leaves_good_clients_served", |c| {
            Box::pin(flood(c))
        }),
        ("a_full_argon2_queue_sheds_requests_with_503", |c| {
            Box::pin(shedding(c))
        }),
    ]
}

/// `n` clients, each with the secret entries `entries`.
fn clients(n: usize, entries: &[&str]) -> String {
    let secrets: String = entries
        .iter()
        .map(|e| format!("\n  - name: {e}\n    expiresAfter: 30d"))
        .collect();
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: c{i}\nspec:\n  scopes: [read]\n  secrets:{secrets}\n---\n"
            )
        })
        .collect()
}

/// Every `client_secret.<entry>` value seen so far, and any that changed.
#[derive(Default)]
struct Seen {
    values: BTreeMap<(String, String), Vec<u8>>,
    changed: Vec<String>,
}

/// Samples the credentials Secrets every 200 ms until dropped.
fn watch_values(ctx: &Ctx) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let api = ctx.api::<Secret>();
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                if let Ok(list) = api
                    .list(&ListParams::default().labels("oauth-operator.dev/client"))
                    .await
                    && let Ok(mut seen) = seen.lock()
                {
                    for s in list {
                        let name = s.name_any();
                        for (key, value) in s.data.unwrap_or_default() {
                            if !key.starts_with("client_secret.") {
                                continue;
                            }
                            let slot = (name.clone(), key.clone());
                            match seen.values.get(&slot) {
                                Some(old) if *old != value.0 => {
                                    seen.changed.push(format!("{name}/{key}"));
                                }
                                Some(_) => {}
                                None => {
                                    seen.values.insert(slot, value.0);
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    (seen, task)
}

/// A random delay between `min_ms` and `min_ms + 1275` ms.
fn random_delay(min_ms: u64) -> Duration {
    let r = oauth_operator::auth::secret::random_bytes::<1>().map_or(0, |b| u64::from(b[0]));
    Duration::from_millis(min_ms + r * 5)
}

/// Every client Ready with `entries` valid secrets, nothing orphaned, every value stable,
/// and every entry's value accepted by the token server.
async fn converged(
    ctx: &Ctx,
    server: &Server,
    n: usize,
    entries: &[&str],
    seen: &Mutex<Seen>,
) -> anyhow::Result<()> {
    let want = u32::try_from(entries.len())?;
    eventually(Duration::from_secs(180), "every client Ready", || async {
        let list = ctx.api::<OAuthClient>().list(&Default::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.valid_secrets == Some(want)
                        && s.observed_generation == c.metadata.generation
                        && s.conditions
                            .iter()
                            .any(|x| x.type_ == "Ready" && x.status == "True")
                })
            })
            .count();
        ensure!(ready == n, "{ready} of {n} Ready with {want} secrets");
        Ok(())
    })
    .await?;

    let secrets = ctx
        .api::<Secret>()
        .list(&ListParams::default().labels("oauth-operator.dev/client"))
        .await?;
    let verifiers = ctx
        .api::<OAuthClientVerifier>()
        .list(&Default::default())
        .await?;
    ensure!(
        secrets.items.len() == n,
        "{} credentials Secrets for {n} clients",
        secrets.items.len()
    );
    ensure!(
        verifiers.items.len() == n,
        "{} verifiers for {n} clients",
        verifiers.items.len()
    );
    for s in &secrets.items {
        ensure!(
            !s.owner_references().is_empty(),
            "Secret {} has no owner",
            s.name_any()
        );
        let keys: Vec<&String> = s
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("client_secret."))
            .collect();
        ensure!(
            keys.len() == entries.len(),
            "Secret {} holds {keys:?}",
            s.name_any()
        );
    }
    {
        let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        ensure!(
            seen.changed.is_empty(),
            "secret values changed after being written: {:?}",
            seen.changed
        );
    }

    // Each entry's value works, so the verifier hashed what the Secret holds.
    for s in &secrets.items {
        let data = s.data.clone().unwrap_or_default();
        let id = data
            .get("client_id")
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .context("client_id")?;
        for e in entries {
            let value = data
                .get(&format!("client_secret.{e}"))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .context("entry value")?;
            server
                .issue(&ctx.http, &id, &value)
                .await
                .with_context(|| format!("{}/{e}", s.name_any()))?;
        }
    }
    Ok(())
}

async fn killed(ctx: Ctx) -> anyhow::Result<()> {
    const N: usize = 200;
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let mut controller: Proc = ctx.start_controller(&issuer)?;
    let server = ctx.start_server(port).await?;
    let (seen, sampler) = watch_values(&ctx);

    // Create 200 clients, then rotate all of them (a second secret each), killing the
    // controller at random points ten times during each.
    let mut kills = 0;
    for entries in [&["first"][..], &["first", "second"][..]] {
        ctx.apply_server_side(&clients(N, entries))?;
        for _ in 0..10 {
            tokio::time::sleep(random_delay(200)).await;
            controller.kill();
            kills += 1;
            controller = ctx.start_controller(&issuer)?;
        }
    }
    ensure!(kills == 20);
    let result = converged(&ctx, &server, N, &["first", "second"], &seen).await;
    sampler.abort();
    result
}

async fn racing(ctx: Ctx) -> anyhow::Result<()> {
    const N: usize = 40;
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    // Two controllers on the same namespace, leader election off on purpose.
    let _a = ctx.start_controller(&issuer)?;
    let _b = ctx.start_controller(&issuer)?;
    let server = ctx.start_server(port).await?;
    let (seen, sampler) = watch_values(&ctx);
    for entries in [&["one", "two"][..], &["one", "two", "three"][..]] {
        ctx.apply_server_side(&clients(N, entries))?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let result = converged(&ctx, &server, N, &["one", "two", "three"], &seen).await;
    sampler.abort();
    result
}

/// Creates a client in the private cluster of the outage test and waits until it is Ready;
/// returns its client id and secret.
async fn ready_client(
    admin: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let clients: kube::Api<OAuthClient> = kube::Api::namespaced(admin.clone(), ns);
    let client: OAuthClient = serde_json::from_value(serde_json::json!({
        "apiVersion": "oauth-operator.dev/v1alpha1",
        "kind": "OAuthClient",
        "metadata": {"name": name},
        "spec": {"scopes": ["read"]},
    }))?;
    clients.create(&Default::default(), &client).await?;
    eventually(
        Duration::from_secs(60),
        &format!("{name} Ready"),
        || async {
            let c = clients.get(name).await?;
            let ready = c
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|x| x.type_ == "Ready" && x.status == "True");
            ensure!(ready, "not Ready yet");
            Ok(())
        },
    )
    .await?;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(admin.clone(), ns);
    let data = secrets
        .get(&format!("{name}-credentials"))
        .await?
        .data
        .unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .context("credentials key")
    };
    Ok((get("client_id")?, get("client_secret")?))
}

async fn token_ok(ctx: &Ctx, server: &Server, creds: &(String, String)) -> anyhow::Result<()> {
    server
        .issue(&ctx.http, &creds.0, &creds.1)
        .await
        .map(|_| ())
}

/// Its own control plane (the shared one serves the other tests): the API server stopped
/// for a minute, then etcd restarted.
async fn outage(ctx: Ctx) -> anyhow::Result<()> {
    use envtest::{ControlPlane, Options};
    let mut cp = ControlPlane::start(Options {
        dir: None,
        crds: oauth_operator::api::crds(),
        issuer_at_own_url: false,
    })
    .await?;
    let admin = cp.client().await?;
    let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ctx.ns},
    }))?;
    kube::Api::all(admin.clone())
        .create(&Default::default(), &ns)
        .await?;
    let kubeconfig = cp.kubeconfig().to_path_buf();
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let _controller = ctx.start_controller_as(&kubeconfig, &issuer, &[])?;
    let server = ctx.start_server_as(&kubeconfig, port, &[]).await?;
    let before = ready_client(&admin, &ctx.ns, "before").await?;
    token_ok(&ctx, &server, &before).await?;

    cp.stop_process("kube-apiserver");
    let down = std::time::Instant::now();
    eventually(
        Duration::from_secs(30),
        "the server says it serves its last state",
        || async {
            ensure!(
                server
                    .metrics(&ctx.http)
                    .await?
                    .contains("oauth_operator_watches_connected 0")
            );
            let res = ctx
                .http
                .get(format!("{}/readyz", server.url))
                .send()
                .await?;
            ensure!(res.status().is_success(), "still ready: it can serve");
            ensure!(res.text().await?.contains("reconnecting"));
            Ok(())
        },
    )
    .await?;
    let mut served = 0;
    while down.elapsed() < Duration::from_secs(60) {
        token_ok(&ctx, &server, &before)
            .await
            .context("a known client while the API server is down")?;
        served += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    ensure!(served >= 10);

    cp.restart_process("kube-apiserver").await?;
    eventually(Duration::from_secs(60), "watches reconnected", || async {
        ensure!(
            server
                .metrics(&ctx.http)
                .await?
                .contains("oauth_operator_watches_connected 1")
        );
        Ok(())
    })
    .await?;
    // The controller converged by itself, and the server picked the change up.
    let after = ready_client(&admin, &ctx.ns, "after").await?;
    eventually(Duration::from_secs(20), "the new client served", || {
        token_ok(&ctx, &server, &after)
    })
    .await?;

    cp.stop_process("etcd");
    tokio::time::sleep(Duration::from_secs(5)).await;
    token_ok(&ctx, &server, &before)
        .await
        .context("a known client while etcd is down")?;
    cp.restart_process("etcd").await?;
    let again = ready_client(&admin, &ctx.ns, "after-etcd").await?;
    eventually(
        Duration::from_secs(20),
        "served after the etcd restart",
        || token_ok(&ctx, &server, &again),
    )
    .await?;
    token_ok(&ctx, &server, &before).await?;
    Ok(())
}

/// 1,500 hostile requests from 32 connections (wrong secrets for 100 unknown client ids and
/// for one real client, oversized and malformed bodies) while a good client keeps asking:
/// it is always served, memory stays bounded, and the attacked client's holder, who never
/// authenticated before, is served the moment the attack stops: a generated secret is
/// never locked (nothing can be guessed against it).
async fn flood(ctx: Ctx) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let _controller = ctx.start_controller(&issuer)?;
    let server = ctx
        .start_server_with(
            port,
            &[
                "--lockout-failures=5",
                "--lockout-wait=3s",
                "--lockout-max-wait=3s",
            ],
        )
        .await?;
    ctx.apply(&clients(2, &["only"]))?;
    ctx.wait_ready("c0").await?;
    ctx.wait_ready("c1").await?;
    let good = ctx.credentials("c0-credentials").await?;
    let target_id = ctx.credentials("c1-credentials").await?.0;
    let target_secret = ctx
        .credentials_key("c1-credentials", "client_secret.only")
        .await?;
    token_ok(&ctx, &server, &good).await?;
    let rss_before = server.process().rss_mib()?;

    let attack = {
        let (http, url, target_id) = (ctx.http.clone(), server.url.clone(), target_id.clone());
        tokio::spawn(async move {
            let requests = (0..1500).map(|i| {
                let (http, url, target_id) = (http.clone(), url.clone(), target_id.clone());
                async move {
                    let req = http.post(format!("{url}/token"));
                    let req = match i % 5 {
                        0..=2 => req
                            .basic_auth(format!("attacker-{}", i % 100), Some("guess"))
                            .form(&[("grant_type", "client_credentials")]),
                        3 => req
                            .basic_auth(&target_id, Some("guess"))
                            .form(&[("grant_type", "client_credentials")]),
                        _ if i % 2 == 0 => req
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(format!(
                                "grant_type=client_credentials&x={}",
                                "a".repeat(40_000)
                            )),
                        _ => req
                            .header("content-type", "text/plain")
                            .body("grant_type=client_credentials&grant_type=password"),
                    };
                    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
                }
            });
            futures::stream::iter(requests)
                .buffer_unordered(32)
                .collect::<Vec<u16>>()
                .await
        })
    };
    // The good client, meanwhile: served every time.
    let mut good_served = 0;
    while !attack.is_finished() {
        token_ok(&ctx, &server, &good)
            .await
            .context("the good client during the flood")?;
        good_served += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let statuses = attack.await?;
    // Without argon2 for unknown ids and generated secrets the flood is over in about a
    // second: one good request inside it is what this can ask for.
    ensure!(
        good_served >= 1,
        "the flood ended too fast to say anything ({good_served})"
    );
    ensure!(
        statuses
            .iter()
            .all(|s| [400, 401, 413, 415, 503].contains(s)),
        "unexpected answers to the flood: {:?}",
        statuses
            .iter()
            .filter(|s| ![400, 401, 413, 415, 503].contains(*s))
            .collect::<Vec<_>>()
    );
    let rss_after = server.process().rss_mib()?;
    // At most a few argon2 blocks (19 MiB each) beyond the idle size, however long the flood.
    ensure!(
        rss_after < rss_before + 250,
        "server RSS {rss_before} -> {rss_after} MiB"
    );

    // The attacked client's real holder, never warmed, is served at once: its secret is
    // generated, so the flood of guesses locked nothing.
    token_ok(&ctx, &server, &(target_id, target_secret))
        .await
        .context("the attacked client's holder right after the flood")?;
    let metrics = server.metrics(&ctx.http).await?;
    ensure!(
        metrics.contains("oauth_operator_client_lockouts_total 0"),
        "a generated secret was locked: {metrics}"
    );
    Ok(())
}

/// One argon2 check at a time and two waiting: a burst of 40 wrong guesses at a client whose
/// secret was chosen (argon2id) mostly gets 503 `temporarily_unavailable` at once instead of
/// queueing without bound, and the client with a generated secret is served throughout.
async fn shedding(ctx: Ctx) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let _controller = ctx.start_controller(&format!("http://127.0.0.1:{port}"))?;
    let server = ctx
        .start_server_with(
            port,
            &[
                "--max-concurrent-hashes=1",
                "--max-queued-hashes=2",
                "--lockout-failures=0",
            ],
        )
        .await?;
    ctx.apply(&clients(1, &["only"]))?;
    ctx.wait_ready("c0").await?;
    let good = ctx.credentials("c0-credentials").await?;
    token_ok(&ctx, &server, &good).await?;
    let (chosen, _) = ctx
        .chosen_client("chosen", "a-secret-a-team-chose-4d2c")
        .await?;

    let burst = (0..40).map(|i| {
        let (http, url, chosen) = (ctx.http.clone(), server.url.clone(), chosen.clone());
        async move {
            let res = http
                .post(format!("{url}/token"))
                .basic_auth(&chosen, Some(format!("guess-{i}")))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await?;
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key("retry-after");
            let body: serde_json::Value = res.json().await?;
            Ok::<_, anyhow::Error>((status, retry_after, body))
        }
    });
    let (answers, _) = tokio::join!(
        futures::future::join_all(burst),
        token_ok(&ctx, &server, &good)
    );
    let mut shed = 0;
    for answer in answers {
        let (status, retry_after, body) = answer?;
        match status {
            401 => ensure!(body["error"] == "invalid_client", "{body}"),
            503 => {
                ensure!(
                    body["error"] == "temporarily_unavailable" && retry_after,
                    "{body}"
                );
                shed += 1;
            }
            other => bail!("unexpected {other}: {body}"),
        }
    }
    ensure!(shed >= 1, "nothing was shed: every request waited its turn");
    token_ok(&ctx, &server, &good)
        .await
        .context("the warm client after the burst")?;
    let metrics = server.metrics(&ctx.http).await?;
    ensure!(
        metrics.contains("oauth_operator_argon2_queue 0"),
        "{metrics}"
    );
    Ok(())
}
