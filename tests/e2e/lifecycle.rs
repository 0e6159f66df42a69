//! What happens to credentials over a client's life: deletion, controller restarts,
//! re-applies, a lost status, a deleted Secret.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use oauth_operator::api::{OAuthClient, OAuthClientVerifier};

use crate::support::{Ctx, TestFn, eventually};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "deleting_a_client_revokes_it_and_collects_its_secret",
            |c| Box::pin(delete_client(c)),
        ),
        ("restart_reapply_and_lost_status_change_no_secret", |c| {
            Box::pin(restart(c))
        }),
        ("a_deleted_secret_is_recreated_with_a_new_credential", |c| {
            Box::pin(deleted_secret(c))
        }),
        ("kubectl_get_shows_client_id_type_ready_and_age", |c| {
            Box::pin(printer_columns(c))
        }),
    ]
}

const CLIENT: &str = r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: reports
spec:
  scopes: [reports.read]
"#;

const GRANT: [(&str, &str); 1] = [("grant_type", "client_credentials")];

async fn delete_client(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(CLIENT)?;
    let client = ctx.wait_ready("reports").await?;
    // No clientId in the spec: the generated one is the resource's UID.
    ensure!(client.status.as_ref().and_then(|s| s.client_id.clone()) == client.metadata.uid);
    let (id, secret) = ctx.credentials("reports-credentials").await?;
    let (code, _, _) = server
        .token(&ctx.http, Some((&id, &secret)), &GRANT)
        .await?;
    ensure!(code == 200);

    ctx.api::<OAuthClient>()
        .delete("reports", &DeleteParams::default())
        .await?;
    eventually(
        Duration::from_secs(15),
        "credentials refused after delete",
        || async {
            let (code, _, body) = server
                .token(&ctx.http, Some((&id, &secret)), &GRANT)
                .await?;
            ensure!(
                code == 401 && body["error"] == "invalid_client",
                "still {code}"
            );
            Ok(())
        },
    )
    .await?;
    eventually(
        Duration::from_secs(60),
        "Secret garbage-collected",
        || async {
            ensure!(
                ctx.api::<Secret>()
                    .get_opt("reports-credentials")
                    .await?
                    .is_none(),
                "Secret still there"
            );
            ensure!(
                ctx.api::<OAuthClientVerifier>()
                    .get_opt("reports")
                    .await?
                    .is_none(),
                "verifier still there"
            );
            Ok(())
        },
    )
    .await?;
    Ok(())
}

async fn restart(ctx: Ctx) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let mut controller = ctx.start_controller(&issuer)?;
    let server = ctx.start_server(port).await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("reports").await?;
    let secrets = ctx.api::<Secret>();
    let verifiers = ctx.api::<OAuthClientVerifier>();
    let before = secrets.get("reports-credentials").await?;
    let verifier_before = verifiers.get("reports").await?;
    let (id, secret) = ctx.credentials("reports-credentials").await?;

    // 1. A controller restart.
    controller.kill();
    let controller = ctx.start_controller(&issuer)?;
    wait_for_reconcile(&controller, 1).await?;

    // 2. A re-apply of the same YAML, and an edit of unrelated fields and back.
    ctx.apply(CLIENT)?;
    ctx.apply(&CLIENT.replace("[reports.read]", "[reports.read, reports.export]"))?;
    ctx.apply(CLIENT)?;
    // 3. A lost status.
    let clients = ctx.api::<OAuthClient>();
    clients
        .patch_status(
            "reports",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": null})),
        )
        .await?;
    let after_loss = ctx.wait_ready("reports").await?;
    ensure!(
        after_loss.status.and_then(|s| s.client_id).as_deref() == Some(id.as_str()),
        "client id changed"
    );

    let after = secrets.get("reports-credentials").await?;
    ensure!(after.data == before.data, "the Secret's content changed");
    ensure!(
        after.metadata.resource_version == before.metadata.resource_version,
        "the Secret was rewritten"
    );
    let verifier_after = verifiers.get("reports").await?;
    // The scope edit rewrote the verifier's scopes, but no hash changed.
    ensure!(
        verifier_after.spec.secrets == verifier_before.spec.secrets,
        "a hash was recomputed"
    );
    ensure!(verifier_after.spec.scopes == vec!["reports.read".to_string()]);
    ensure!(
        !controller.log_text().contains("argon2:"),
        "the restarted controller computed a hash over an unchanged client"
    );
    let (code, _, _) = server
        .token(&ctx.http, Some((&id, &secret)), &GRANT)
        .await?;
    ensure!(code == 200, "mounted credentials stopped working");
    Ok(())
}

/// Waits until the controller's log shows it reconciled at least `n` times.
async fn wait_for_reconcile(controller: &crate::support::Proc, n: usize) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(30),
        "restarted controller reconciled",
        || async {
            let count = controller.log_text().matches("reconciled").count();
            ensure!(count >= n, "{count} reconciles so far");
            Ok(())
        },
    )
    .await
}

async fn deleted_secret(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("reports").await?;
    let (id, old) = ctx.credentials("reports-credentials").await?;
    let secrets = ctx.api::<Secret>();
    let uid_before = secrets.get("reports-credentials").await?.metadata.uid;
    secrets
        .delete("reports-credentials", &DeleteParams::default())
        .await?;

    let new = eventually(Duration::from_secs(30), "Secret recreated", || async {
        let s = secrets.get("reports-credentials").await?;
        ensure!(s.metadata.uid != uid_before, "old Secret still there");
        ctx.credentials("reports-credentials").await
    })
    .await?
    .1;
    ensure!(
        new != old,
        "a recreated Secret must hold a new value: the old one may have leaked"
    );
    eventually(
        Duration::from_secs(15),
        "new credential accepted, old refused",
        || async {
            let (code_new, _, _) = server.token(&ctx.http, Some((&id, &new)), &GRANT).await?;
            let (code_old, _, _) = server.token(&ctx.http, Some((&id, &old)), &GRANT).await?;
            ensure!(
                code_new == 200 && code_old == 401,
                "new {code_new}, old {code_old}"
            );
            Ok(())
        },
    )
    .await
}

async fn printer_columns(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, _server) = ctx.start_stack().await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("reports").await?;
    let out = ctx.kubectl(&["get", "oauthclients"], None)?;
    let text = String::from_utf8(out.stdout)?;
    let header = text.lines().next().context("no output")?;
    for col in [
        "NAME",
        "CLIENT ID",
        "TYPE",
        "ACTIVE",
        "SECRETS",
        "READY",
        "AGE",
    ] {
        ensure!(header.contains(col), "column {col} missing in: {header}");
    }
    let row = text.lines().nth(1).context("no row")?;
    ensure!(
        row.contains("confidential") && row.contains("true") && row.contains("True"),
        "row: {row}"
    );
    let cells: Vec<&str> = row.split_whitespace().collect();
    ensure!(
        cells.get(4) == Some(&"1"),
        "one valid secret in the SECRETS column: {row}"
    );
    Ok(())
}
