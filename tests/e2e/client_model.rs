//! The client model of the seeds, on the real control plane: rotation with overlap,
//! removal, expiry, deactivation, bring-your-own secrets, id conflicts, roles and
//! audiences, public clients, the output Secret's shape.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use oauth_operator::api::{OAuthClient, OAuthClientVerifier, SecretState};

use crate::support::{Ctx, Server, TestFn, condition_message, eventually, verify_token};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("rotation_keeps_old_and_new_until_the_old_is_removed", |c| {
            Box::pin(rotation(c))
        }),
        ("an_expired_secret_is_refused_after_a_warning", |c| {
            Box::pin(expiry(c))
        }),
        ("deactivation_refuses_and_reactivation_restores", |c| {
            Box::pin(deactivation(c))
        }),
        (
            "bring_your_own_secret_waits_then_works_and_is_never_copied",
            |c| Box::pin(byo(c)),
        ),
        ("the_older_client_keeps_a_contested_id", |c| {
            Box::pin(conflict(c))
        }),
        (
            "a_secret_someone_else_made_is_reported_and_left_alone",
            |c| Box::pin(secret_taken(c)),
        ),
        ("a_display_name_and_version_are_reported_once_taken", |c| {
            Box::pin(display_name_conflict(c))
        }),
        ("roles_scopes_and_audiences_reach_the_token", |c| {
            Box::pin(claims(c))
        }),
        ("public_client_gets_no_secret", |c| Box::pin(public(c))),
        (
            "output_secret_name_labels_annotations_and_keys_are_configurable",
            |c| Box::pin(output_secret(c)),
        ),
        (
            "the_operator_lifetime_bounds_apply_with_a_clear_condition",
            |c| Box::pin(lifetime_bounds(c)),
        ),
    ]
}

const GRANT: [(&str, &str); 1] = [("grant_type", "client_credentials")];

fn client(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
}

async fn code(ctx: &Ctx, server: &Server, id: &str, secret: &str) -> anyhow::Result<u16> {
    Ok(server.token(&ctx.http, Some((id, secret)), &GRANT).await?.0)
}

async fn rotation(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client(
        "svc",
        "  clientId: svc\n  secrets:\n  - name: first\n    description: initial",
    ))?;
    ctx.wait_ready("svc").await?;
    let first = ctx
        .credentials_key("svc-credentials", "client_secret.first")
        .await?;
    ensure!(
        ctx.credentials_key("svc-credentials", "client_secret")
            .await?
            == first,
        "stable key holds the only secret"
    );

    // Add a second secret: both work, the stable key moves to the newest.
    ctx.apply(&client("svc", "  clientId: svc\n  secrets:\n  - name: first\n    description: initial\n  - name: second\n    description: rotated"))?;
    let second = eventually(
        Duration::from_secs(30),
        "second secret generated",
        || async {
            ctx.credentials_key("svc-credentials", "client_secret.second")
                .await
        },
    )
    .await?;
    ensure!(second != first);
    ensure!(
        ctx.credentials_key("svc-credentials", "client_secret.first")
            .await?
            == first,
        "rotation must keep the first value"
    );
    eventually(Duration::from_secs(15), "both secrets accepted", || async {
        ensure!(code(&ctx, &server, "svc", &first).await? == 200);
        ensure!(code(&ctx, &server, "svc", &second).await? == 200);
        Ok(())
    })
    .await?;
    ensure!(
        ctx.credentials_key("svc-credentials", "client_secret")
            .await?
            == second,
        "stable key = newest"
    );
    let c = ctx.wait_ready("svc").await?;
    let status = c.status.context("status")?;
    ensure!(status.valid_secrets == Some(2));
    let described: Vec<_> = status
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.description.as_deref()))
        .collect();
    ensure!(
        described == vec![("first", Some("initial")), ("second", Some("rotated"))],
        "{described:?}"
    );
    ensure!(status.secrets.iter().all(|s| s.created_at.is_some()
        && s.expires_at.is_some()
        && s.state == SecretState::Valid));

    // Remove the first: revoked within seconds, its key gone, the second still works.
    ctx.apply(&client(
        "svc",
        "  clientId: svc\n  secrets:\n  - name: second\n    description: rotated",
    ))?;
    eventually(Duration::from_secs(15), "first secret revoked", || async {
        ensure!(code(&ctx, &server, "svc", &first).await? == 401);
        ensure!(code(&ctx, &server, "svc", &second).await? == 200);
        Ok(())
    })
    .await?;
    let data = ctx
        .api::<Secret>()
        .get("svc-credentials")
        .await?
        .data
        .context("data")?;
    ensure!(
        !data.contains_key("client_secret.first"),
        "removed secret left in the Secret"
    );
    ensure!(
        ctx.credentials_key("svc-credentials", "client_secret.second")
            .await?
            == second,
        "kept value changed"
    );
    // The status never holds a value or a hash.
    let raw = serde_json::to_string(&ctx.api::<OAuthClient>().get("svc").await?)?;
    ensure!(
        !raw.contains(&second) && !raw.contains("argon2"),
        "status leaks secret material"
    );
    Ok(())
}

async fn expiry(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    // A secret valid for 6 seconds: within the default 7-day warning window from the start.
    ctx.apply(&client("short", "  clientId: short\n  secrets:\n  - name: brief\n    expiresAfter: 6s\n  - name: lasting\n    neverExpires: true"))?;
    let c = ctx
        .wait_condition("short", "SecretsExpiring", "True", Some("ExpiringSoon"))
        .await?;
    let states: BTreeMap<_, _> = c
        .status
        .iter()
        .flat_map(|s| &s.secrets)
        .map(|s| (s.name.clone(), s.state))
        .collect();
    ensure!(
        states.get("brief") == Some(&SecretState::ExpiringSoon),
        "{states:?}"
    );
    ensure!(
        states.get("lasting") == Some(&SecretState::Valid),
        "{states:?}"
    );
    let brief = ctx
        .credentials_key("short-credentials", "client_secret.brief")
        .await?;
    let lasting = ctx
        .credentials_key("short-credentials", "client_secret.lasting")
        .await?;
    ensure!(code(&ctx, &server, "short", &brief).await? == 200);

    eventually(
        Duration::from_secs(30),
        "expired secret refused and reported",
        || async {
            ensure!(
                code(&ctx, &server, "short", &brief).await? == 401,
                "still accepted"
            );
            let c = ctx.api::<OAuthClient>().get("short").await?;
            let expired = c
                .status
                .iter()
                .flat_map(|s| &s.secrets)
                .any(|s| s.name == "brief" && s.state == SecretState::Expired);
            ensure!(expired, "status not expired yet");
            Ok(())
        },
    )
    .await?;
    ensure!(
        code(&ctx, &server, "short", &lasting).await? == 200,
        "the other secret must keep working"
    );
    // The stable key moved off the expired secret.
    ensure!(
        ctx.credentials_key("short-credentials", "client_secret")
            .await?
            == lasting
    );
    let events = ctx.kubectl(
        &["get", "events", "-o", "jsonpath={.items[*].reason}"],
        None,
    )?;
    let reasons = String::from_utf8(events.stdout)?;
    ensure!(
        reasons.contains("SecretExpiringSoon") && reasons.contains("SecretExpired"),
        "events: {reasons}"
    );
    ensure!(!reasons.contains(&brief));

    // An absolute expiry already past is refused by the controller, with nothing generated.
    ctx.apply(&client(
        "late",
        "  secrets:\n  - name: old\n    expiresAt: \"2001-01-01T00:00:00Z\"",
    ))?;
    let c = ctx
        .wait_condition("late", "SpecValid", "False", Some("InvalidSecretSpec"))
        .await?;
    let msg = condition_message(&c, "SpecValid");
    ensure!(
        msg.contains("spec.secrets[old].expiresAt is in the past"),
        "{msg}"
    );
    ctx.wait_condition("late", "Ready", "False", Some("NoValidSecret"))
        .await?;
    let events = ctx.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=late",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    )?;
    let reasons = String::from_utf8(events.stdout)?;
    ensure!(reasons.contains("InvalidSecretSpec"), "events: {reasons}");
    ensure!(
        ctx.credentials_key("late-credentials", "client_secret.old")
            .await
            .is_err(),
        "nothing generated for an entry that expired before it existed"
    );
    Ok(())
}

async fn deactivation(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client("app", "  clientId: app"))?;
    ctx.wait_ready("app").await?;
    let (_, secret) = ctx.credentials("app-credentials").await?;
    ensure!(code(&ctx, &server, "app", &secret).await? == 200);

    ctx.apply(&client("app", "  clientId: app\n  active: false"))?;
    eventually(
        Duration::from_secs(15),
        "deactivated client refused",
        || async {
            ensure!(code(&ctx, &server, "app", &secret).await? == 401);
            Ok(())
        },
    )
    .await?;
    ctx.wait_condition("app", "Ready", "False", Some("Deactivated"))
        .await?;
    let verifier = ctx.api::<OAuthClientVerifier>().get("app").await?;
    let not_before = verifier
        .spec
        .not_before
        .clone()
        .context("deactivation sets notBefore")?;
    ensure!(
        !verifier.spec.secrets.is_empty(),
        "secrets kept while deactivated"
    );
    ensure!(
        ctx.credentials("app-credentials").await?.1 == secret,
        "secret kept while deactivated"
    );

    ctx.apply(&client("app", "  clientId: app\n  active: true"))?;
    eventually(
        Duration::from_secs(15),
        "reactivated client accepted",
        || async {
            ensure!(code(&ctx, &server, "app", &secret).await? == 200);
            Ok(())
        },
    )
    .await?;
    let verifier = ctx.api::<OAuthClientVerifier>().get("app").await?;
    ensure!(
        verifier.spec.not_before == Some(not_before),
        "tokens from before the deactivation stay invalid"
    );
    Ok(())
}

async fn byo(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client("ext", "  clientId: ext\n  secrets:\n  - name: vault\n    secretKeyRef:\n      name: from-vault\n      key: password"))?;
    ctx.wait_condition("ext", "WaitingForSecret", "True", Some("SecretNotFound"))
        .await?;
    ctx.wait_condition("ext", "Ready", "False", Some("WaitingForSecret"))
        .await?;
    let data = ctx
        .api::<Secret>()
        .get("ext-credentials")
        .await?
        .data
        .unwrap_or_default();
    ensure!(
        !data.keys().any(|k| k.starts_with("client_secret")),
        "nothing random generated in its place: {:?}",
        data.keys()
    );

    let value = "a-value-our-vault-chose-9f8e7d";
    ctx.api::<Secret>()
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("from-vault".into()),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(
                    "password".to_string(),
                    ByteString(value.as_bytes().to_vec()),
                )])),
                ..Secret::default()
            },
        )
        .await?;
    ctx.wait_ready("ext").await?;
    eventually(
        Duration::from_secs(15),
        "brought secret accepted",
        || async {
            ensure!(code(&ctx, &server, "ext", value).await? == 200);
            Ok(())
        },
    )
    .await?;
    let ours = ctx.api::<Secret>().get("ext-credentials").await?;
    let copied = ours
        .data
        .unwrap_or_default()
        .values()
        .any(|v| v.0 == value.as_bytes());
    ensure!(
        !copied,
        "the brought secret was copied into the credentials Secret"
    );

    // The external system rotates the value: the new one works, the old one stops.
    let rotated = "the-vault-rotated-it-4c3b2a";
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, rotated);
    let patch = serde_json::json!({"data": {"password": encoded}});
    ctx.api::<Secret>()
        .patch(
            "from-vault",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    // Poll with the old value until it is refused, and only then try the new one: polling
    // with a value not yet accepted would count as failed guesses and trip the lockout.
    eventually(
        Duration::from_secs(60),
        "rotated external value followed",
        || async {
            ensure!(
                code(&ctx, &server, "ext", value).await? == 401,
                "old value still accepted"
            );
            ensure!(
                code(&ctx, &server, "ext", rotated).await? == 200,
                "new value not accepted"
            );
            Ok(())
        },
    )
    .await
}

async fn conflict(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client("first", "  clientId: shared-id"))?;
    ctx.wait_ready("first").await?;
    let (_, first_secret) = ctx.credentials("first-credentials").await?;
    ctx.apply(&client("second", "  clientId: SHARED-ID"))?;
    let c = ctx
        .wait_condition("second", "Ready", "False", Some("ClientIdConflict"))
        .await?;
    let msg = condition_message(&c, "Ready");
    ensure!(msg.contains("first"), "the message names the owner: {msg}");
    ensure!(
        ctx.api::<OAuthClientVerifier>()
            .get_opt("second")
            .await?
            .is_none(),
        "the loser must not be served"
    );
    ensure!(
        code(&ctx, &server, "shared-id", &first_secret).await? == 200,
        "the owner keeps working"
    );

    ctx.api::<OAuthClient>()
        .delete("first", &DeleteParams::default())
        .await?;
    ctx.wait_ready("second").await?;
    let (_, second_secret) = ctx.credentials("second-credentials").await?;
    eventually(
        Duration::from_secs(15),
        "the id passes to the remaining client",
        || async {
            ensure!(code(&ctx, &server, "SHARED-ID", &second_secret).await? == 200);
            Ok(())
        },
    )
    .await
}

/// A Secret of the credentials' name that the controller did not make: the watch never
/// sees it (it carries no label of ours), so only the create's 409 tells, and from then on
/// the controller reads it, reports it and leaves it as it is; once it is gone the client
/// gets its own.
async fn secret_taken(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    let theirs = Secret {
        metadata: ObjectMeta {
            name: Some("taken-credentials".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"not-yours".to_vec()),
        )])),
        ..Default::default()
    };
    let secrets = ctx.api::<Secret>();
    secrets.create(&PostParams::default(), &theirs).await?;
    ctx.apply(&client("taken", "  clientId: taken"))?;
    let c = ctx
        .wait_condition("taken", "Ready", "False", Some("SecretConflict"))
        .await?;
    let msg = condition_message(&c, "Ready");
    ensure!(
        msg.contains("taken-credentials"),
        "the message names the Secret: {msg}"
    );
    let now = secrets.get("taken-credentials").await?;
    ensure!(
        now.data == theirs.data,
        "their Secret is untouched: {:?}",
        now.data.map(|d| d.into_keys().collect::<Vec<_>>())
    );
    ensure!(
        ctx.api::<OAuthClientVerifier>()
            .get_opt("taken")
            .await?
            .is_none(),
        "nothing is served without a Secret of ours"
    );

    secrets
        .delete("taken-credentials", &DeleteParams::default())
        .await?;
    // The controller looks again within a minute by itself; any change to the client
    // (here an annotation) makes it look now.
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: taken\n  annotations:\n    example.com/nudge: \"1\"\nspec:\n  clientId: taken\n",
    )?;
    ctx.wait_ready("taken").await?;
    let (_, secret) = ctx.credentials("taken-credentials").await?;
    eventually(
        Duration::from_secs(15),
        "the client's own secret works",
        || async {
            ensure!(code(&ctx, &server, "taken", &secret).await? == 200);
            Ok(())
        },
    )
    .await
}

/// The seeds' rule that a display name with its version names one client: the newer one
/// is told (condition and Warning Event) but stays served, and is told no more once the
/// older one is gone.
async fn display_name_conflict(ctx: Ctx) -> anyhow::Result<()> {
    use k8s_openapi::api::events::v1::Event;
    let (_controller, server) = ctx.start_stack().await?;
    let named = |version: &str| format!("  displayName: Reports\n  version: \"{version}\"");
    ctx.apply(&client("reports", &named("1.0")))?;
    ctx.wait_ready("reports").await?;
    ctx.apply(&client(
        "reports-copy",
        "  displayName: REPORTS\n  version: \"1.0\"",
    ))?;
    ctx.apply(&client("reports-next", &named("2.0")))?;
    let c = ctx
        .wait_condition(
            "reports-copy",
            "DisplayNameConflict",
            "True",
            Some("DisplayNameVersionTaken"),
        )
        .await?;
    let msg = condition_message(&c, "DisplayNameConflict");
    ensure!(
        msg.contains("reports"),
        "the message names the owner: {msg}"
    );
    // Reported, not an outage: the newer client is served all the same.
    let copy = ctx.wait_ready("reports-copy").await?;
    let id = copy.status.and_then(|s| s.client_id).context("client id")?;
    let (_, secret) = ctx.credentials("reports-copy-credentials").await?;
    ensure!(code(&ctx, &server, &id, &secret).await? == 200);
    eventually(
        Duration::from_secs(30),
        "a Warning Event DisplayNameConflict for reports-copy",
        || async {
            let events = ctx.api::<Event>().list(&Default::default()).await?;
            ensure!(events.items.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("DisplayNameConflict")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("reports-copy")
            }));
            Ok(())
        },
    )
    .await?;
    // Another version is another client.
    let next = ctx.wait_ready("reports-next").await?;
    ensure!(
        next.status
            .iter()
            .flat_map(|s| &s.conditions)
            .all(|c| c.type_ != "DisplayNameConflict"),
        "version 2.0 conflicts with nothing: {:?}",
        next.status
    );

    ctx.api::<OAuthClient>()
        .delete("reports", &DeleteParams::default())
        .await?;
    let api = ctx.api::<OAuthClient>();
    eventually(
        Duration::from_secs(90),
        "the condition goes with the older client",
        || async {
            let c = api.get("reports-copy").await?;
            let conflict = c
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.type_ == "DisplayNameConflict" && c.status == "True")
                .cloned();
            ensure!(conflict.is_none(), "still: {conflict:?}");
            Ok(())
        },
    )
    .await
}

async fn claims(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client(
        "roles",
        "  clientId: roles\n  roles: [billing-admin, member]\n  scopes: [a, b]\n  audiences: [https://one.test, https://two.test]\n  accessTokenLifetimeSeconds: 120",
    ))?;
    ctx.wait_ready("roles").await?;
    let (_, secret) = ctx.credentials("roles-credentials").await?;
    let (status, _, body) = server
        .token(
            &ctx.http,
            Some(("roles", &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "b"),
                ("audience", "https://two.test"),
            ],
        )
        .await?;
    ensure!(status == 200, "{body}");
    ensure!(body["expires_in"] == 120);
    let jwt = body["access_token"].as_str().context("token")?;
    let claims = verify_token(&ctx.http, &server, jwt, "https://two.test").await?;
    ensure!(
        claims.roles == vec!["member".to_string(), "billing-admin".to_string()],
        "default role first, no duplicates: {:?}",
        claims.roles
    );
    ensure!(claims.scope.as_deref() == Some("b"));
    ensure!(claims.aud == vec!["https://two.test".to_string()]);
    ensure!(claims.exp - claims.iat == 120);

    let (status, _, body) = server
        .token(
            &ctx.http,
            Some(("roles", &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("audience", "https://other.test"),
            ],
        )
        .await?;
    // RFC 8707 section 2: a target the client does not ask for.
    ensure!(
        status == 400 && body["error"] == "invalid_target",
        "audience outside the allowed set: {status} {body}"
    );
    Ok(())
}

async fn public(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client(
        "spa",
        "  clientId: spa\n  type: public\n  grantTypes: [authorization_code]\n  redirectUris: [\"https://app.example.test/callback\", \"http://localhost:3000/cb\"]",
    ))?;
    ctx.wait_ready("spa").await?;
    let data = ctx
        .api::<Secret>()
        .get("spa-credentials")
        .await?
        .data
        .context("data")?;
    ensure!(data.contains_key("client_id"));
    ensure!(
        !data.keys().any(|k| k.starts_with("client_secret")),
        "a public client got a secret: {:?}",
        data.keys()
    );
    let v = ctx.api::<OAuthClientVerifier>().get("spa").await?;
    ensure!(v.spec.secrets.is_empty());
    // No secret is accepted for it, whatever is presented.
    let (status, _, body) = server
        .token(&ctx.http, Some(("spa", "anything")), &GRANT)
        .await?;
    ensure!(
        status == 401 && body["error"] == "invalid_client",
        "{status} {body}"
    );
    Ok(())
}

async fn output_secret(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(&client(
        "custom",
        "  clientId: custom\n  credentialsSecret:\n    name: my-app-oauth\n    labels: {team: payments}\n    annotations: {reloader.stakater.com/match: \"true\"}\n    keys: {clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, tokenEndpoint: TOKEN_URL}",
    ))?;
    ctx.wait_ready("custom").await?;
    let s = ctx.api::<Secret>().get("my-app-oauth").await?;
    ensure!(
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str)
            == Some("payments")
    );
    ensure!(
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("reloader.stakater.com/match"))
            .map(String::as_str)
            == Some("true")
    );
    let id = ctx.credentials_key("my-app-oauth", "CLIENT_ID").await?;
    let secret = ctx.credentials_key("my-app-oauth", "CLIENT_SECRET").await?;
    ensure!(id == "custom");
    ensure!(
        ctx.credentials_key("my-app-oauth", "TOKEN_URL").await? == format!("{}/token", server.url)
    );
    ensure!(code(&ctx, &server, &id, &secret).await? == 200);
    let msg = ctx.apply_refused(&client(
        "custom",
        "  clientId: custom\n  credentialsSecret:\n    name: renamed",
    ))?;
    ensure!(
        msg.contains("spec.credentialsSecret.name is immutable"),
        "{msg}"
    );
    Ok(())
}

async fn lifetime_bounds(ctx: Ctx) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let _controller = ctx.start_controller_with(
        &format!("http://127.0.0.1:{port}"),
        &["--min-token-lifetime=120", "--max-token-lifetime=600"],
    )?;
    let server = ctx.start_server(port).await?;
    ctx.apply(&client(
        "long",
        "  clientId: long\n  accessTokenLifetimeSeconds: 900",
    ))?;
    let c = ctx
        .wait_condition("long", "Ready", "False", Some("InvalidSpec"))
        .await?;
    let msg = condition_message(&c, "Ready");
    ensure!(
        msg.contains(
            "spec.accessTokenLifetimeSeconds 900 is outside this operator's bounds 120..600"
        ),
        "{msg}"
    );
    ensure!(
        ctx.api::<OAuthClientVerifier>()
            .get_opt("long")
            .await?
            .is_none(),
        "a client outside the bounds must not be served"
    );
    // Back within bounds: served, and the token lives as long as asked.
    ctx.apply(&client(
        "long",
        "  clientId: long\n  accessTokenLifetimeSeconds: 300",
    ))?;
    ctx.wait_ready("long").await?;
    let (_, secret) = ctx.credentials("long-credentials").await?;
    let (status, _, body) = server
        .token(&ctx.http, Some(("long", &secret)), &GRANT)
        .await?;
    ensure!(
        status == 200 && body["expires_in"] == 300,
        "{status} {body}"
    );
    Ok(())
}
