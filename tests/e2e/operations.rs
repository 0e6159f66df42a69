//! Running for real: leader election among controller replicas, and graceful shutdown on
//! SIGTERM for both components.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Ctx, Proc, TestFn, eventually};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "leader_failover_takes_over_and_generates_no_secret_twice",
            |c| Box::pin(failover(c)),
        ),
        (
            "sigterm_releases_the_lease_and_finishes_in_flight_requests",
            |c| Box::pin(sigterm(c)),
        ),
    ]
}

const LEASE: &str = "oauth-operator-controller";

fn client(name: &str) -> String {
    format!(
        r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: {name}
spec:
  scopes: [read]
"#
    )
}

/// Starts `n` controllers with leader election and waits until one leads; returns them
/// and the index of the leader.
async fn elected(
    ctx: &Ctx,
    issuer: &str,
    n: usize,
    lease_seconds: u32,
) -> anyhow::Result<(Vec<Proc>, usize)> {
    let duration = format!("--lease-duration={lease_seconds}");
    let mut procs = Vec::new();
    for _ in 0..n {
        procs.push(ctx.start_controller_with(issuer, &["--leader-elect=true", &duration])?);
    }
    let leader = eventually(Duration::from_secs(30), "a leader", || async {
        let leading: Vec<usize> = (0..procs.len())
            .filter(|i| procs[*i].log_text().contains("acquired leadership"))
            .collect();
        ensure!(leading.len() == 1, "leaders: {leading:?}");
        Ok(leading[0])
    })
    .await?;
    Ok((procs, leader))
}

async fn secret_state(ctx: &Ctx, name: &str) -> anyhow::Result<(Option<String>, String)> {
    let s = ctx.api::<Secret>().get(name).await?;
    let value = s
        .data
        .as_ref()
        .and_then(|d| d.get("client_secret"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    Ok((s.metadata.resource_version, value.context("client_secret")?))
}

async fn failover(ctx: Ctx) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let (mut procs, leader) = elected(&ctx, &issuer, 2, 4).await?;
    let standby = 1 - leader;
    let server = ctx.start_server(port).await?;

    ctx.apply(&client("first"))?;
    ctx.wait_ready("first").await?;
    let before = secret_state(&ctx, "first-credentials").await?;
    ensure!(
        procs[standby].log_text().contains("waiting for leadership"),
        "the standby waits"
    );
    ensure!(
        !procs[standby].log_text().contains("reconciled"),
        "a standby reconciles nothing"
    );

    // The leader dies without releasing the lease: the standby takes over once it expires.
    procs[leader].kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(20), "standby takes over", || async {
        ensure!(procs[standby].log_text().contains("acquired leadership"));
        Ok(())
    })
    .await?;
    let took = killed.elapsed();
    ensure!(
        took < Duration::from_secs(15),
        "takeover took {took:?} with a 4 s lease"
    );

    ctx.apply(&client("second"))?;
    ctx.wait_ready("second").await?;
    // The new leader reconciled the first client again and changed nothing.
    eventually(
        Duration::from_secs(10),
        "first client reconciled by the new leader",
        || async {
            ensure!(
                procs[standby]
                    .log_text()
                    .contains("oauth-operator.dev/first.")
            );
            Ok(())
        },
    )
    .await?;
    ensure!(
        secret_state(&ctx, "first-credentials").await? == before,
        "the Secret was not rewritten"
    );
    let (id, secret) = ctx.credentials("first-credentials").await?;
    server.issue(&ctx.http, &id, &secret).await?;
    let lease = ctx.api::<Lease>().get(LEASE).await?;
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    ensure!(
        procs[standby].log_text().contains(&holder),
        "the Lease names the new leader"
    );
    Ok(())
}

async fn sigterm(ctx: Ctx) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    // A long lease: a takeover within it proves the leader released it.
    let (mut procs, leader) = elected(&ctx, &issuer, 2, 60).await?;
    let standby = 1 - leader;
    let mut server = ctx.start_server(port).await?;
    ctx.apply(&client("svc"))?;
    ctx.wait_ready("svc").await?;
    let (id, secret) = ctx.credentials("svc-credentials").await?;

    procs[leader].terminate()?;
    let status = procs[leader]
        .wait_exit(Duration::from_secs(15))
        .await?
        .context("the controller did not exit on SIGTERM")?;
    ensure!(status.success(), "controller exit status {status}");
    ensure!(procs[leader].log_text().contains("released leadership"));
    eventually(
        Duration::from_secs(15),
        "standby takes over at once",
        || async {
            ensure!(procs[standby].log_text().contains("acquired leadership"));
            Ok(())
        },
    )
    .await?;

    // A token request in flight when SIGTERM arrives is answered before the server exits.
    let body = "grant_type=client_credentials";
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    };
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(
        format!(
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..5]
        )
        .as_bytes(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.process_mut().terminate()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&body.as_bytes()[5..]).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await??;
    let response = String::from_utf8_lossy(&response);
    ensure!(
        response.starts_with("HTTP/1.1 200"),
        "in-flight request: {response}"
    );
    ensure!(response.contains("access_token"));
    let status = server
        .process_mut()
        .wait_exit(Duration::from_secs(15))
        .await?
        .context("the server did not exit on SIGTERM")?;
    ensure!(status.success(), "server exit status {status}");
    ensure!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "no new connections after shutdown"
    );
    Ok(())
}
