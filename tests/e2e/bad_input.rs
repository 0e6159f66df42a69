//! The apiserver itself refuses bad manifests, with a message naming the field; and the
//! examples in examples/, applied together, are accepted and all become Ready.

use anyhow::ensure;

use crate::support::{Ctx, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("bad_manifests_are_refused_naming_the_field", |c| {
            Box::pin(refused(c))
        }),
        ("client_id_cannot_change", |c| Box::pin(immutable_id(c))),
        ("every_example_applies_and_becomes_ready", |c| {
            Box::pin(examples(c))
        }),
    ]
}

fn client(spec: &str) -> String {
    format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: bad\nspec:\n{spec}\n"
    )
}

async fn refused(ctx: Ctx) -> anyhow::Result<()> {
    let cases = [
        ("lifetime too short", client("  accessTokenLifetimeSeconds: 30"), "spec.accessTokenLifetimeSeconds"),
        ("lifetime too long", client("  accessTokenLifetimeSeconds: 7200"), "spec.accessTokenLifetimeSeconds"),
        ("client id with a space", client("  clientId: \"has space\""), "spec.clientId"),
        ("scope with a quote", client("  scopes: [\"a\\\"b\"]"), "spec.scopes[0]"),
        ("unknown client type", client("  type: weird"), "spec.type"),
        (
            "public client with secrets",
            client("  type: public\n  grantTypes: [authorization_code]\n  redirectUris: [https://a.test/cb]\n  secrets: [{name: s}]"),
            "spec.secrets must be empty for a public client",
        ),
        (
            "public client with client_credentials",
            client("  type: public\n  grantTypes: [client_credentials]"),
            "client_credentials needs a confidential client",
        ),
        (
            "authorization_code without redirect URI",
            client("  grantTypes: [authorization_code]"),
            "spec.redirectUris must list at least one URI for the authorization_code grant",
        ),
        (
            "redirect URI with a fragment",
            client("  grantTypes: [authorization_code]\n  redirectUris: [\"https://a.test/cb#frag\"]"),
            "must not have a fragment",
        ),
        (
            "malformed redirect URI",
            client("  grantTypes: [authorization_code]\n  redirectUris: [\"not a uri\"]"),
            "spec.redirectUris: each entry must be an absolute URI",
        ),
        (
            "plain http redirect URI off loopback",
            client("  grantTypes: [authorization_code]\n  redirectUris: [\"http://app.example.test/cb\"]"),
            "a redirect URI must use https",
        ),
        (
            "federated issuer over plain http off loopback",
            client("  authentication:\n    federated: [{issuer: \"http://oidc.example.test\", subject: ci}]"),
            "spec.authentication.federated[].issuer must use https",
        ),
        (
            "empty authentication",
            client("  authentication: {federated: []}"),
            "spec.authentication must name at least one method",
        ),
        ("unknown grant type", client("  grantTypes: [password]"), "spec.grantTypes[0]"),
        ("repeated grant type", client("  grantTypes: [client_credentials, client_credentials]"), "must not repeat a grant type"),
        (
            "duplicate secret names",
            client("  secrets: [{name: a}, {name: a}]"),
            "spec.secrets[1]",
        ),
        (
            "two expiries on one secret",
            client("  secrets: [{name: a, expiresAfter: 30d, neverExpires: true}]"),
            "set at most one of expiresAfter, expiresAt and neverExpires",
        ),
        (
            "malformed expiry duration",
            client("  secrets: [{name: a, expiresAfter: 3 months}]"),
            "spec.secrets[0].expiresAfter",
        ),
        (
            "secret name not a DNS label",
            client("  secrets: [{name: Has_Caps}]"),
            "spec.secrets[0].name",
        ),
        (
            "token without expiry",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: t\nspec:\n  count: 1\n".to_string(),
            "exactly one of spec.expiresAfter and spec.expiresAt",
        ),
        (
            "token valid for no time",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: t\nspec:\n  expiresAfter: 0s\n".to_string(),
            "spec.expiresAfter",
        ),
        (
            "token valid for zero hours and zero minutes",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: t\nspec:\n  expiresAfter: 0h0m\n".to_string(),
            "spec.expiresAfter",
        ),
        (
            "secret valid for no time",
            client("  secrets: [{name: a, expiresAfter: 0s}]"),
            "spec.secrets[0].expiresAfter",
        ),
        (
            "refresh count that is no number",
            client("  grantTypes: [authorization_code, refresh_token]\n  redirectUris: [https://a.test/cb]\n  refreshCount: lots"),
            "spec.refreshCount",
        ),
        (
            "refresh count without the refresh_token grant",
            client("  grantTypes: [authorization_code]\n  redirectUris: [https://a.test/cb]\n  refreshCount: 3"),
            "spec.refreshCount: refresh tokens need both the authorization_code and the refresh_token grant",
        ),
        (
            "refresh_token grant without authorization_code",
            client("  grantTypes: [client_credentials, refresh_token]"),
            "refresh_token is only issued with the authorization_code grant",
        ),
        (
            "malformed refresh lifetime",
            client("  grantTypes: [authorization_code, refresh_token]\n  redirectUris: [https://a.test/cb]\n  refreshCount: Unlimited\n  refreshTokenIdleLifetime: 1 day"),
            "spec.refreshTokenIdleLifetime",
        ),
        (
            "user with a plaintext password",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthUser\nmetadata:\n  name: u\nspec:\n  passwordHash: hunter2\n".to_string(),
            "spec.passwordHash",
        ),
        (
            "user in a group twice",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthUser\nmetadata:\n  name: u\nspec:\n  groups: [a, a]\n  passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g'\n".to_string(),
            "spec.groups must not repeat a group",
        ),
        (
            "token count zero",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: t\nspec:\n  expiresAfter: 1h\n  count: 0\n".to_string(),
            "spec.count",
        ),
    ];
    for (what, yaml, field) in cases {
        let msg = ctx.apply_refused(&yaml)?;
        ensure!(
            msg.contains(field),
            "{what}: message does not name {field}: {msg}"
        );
    }
    // A zero duration is refused in words by the schema's own rule, not by a regex dump.
    let msg = ctx.apply_refused(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: t\nspec:\n  expiresAfter: 0s\n",
    )?;
    ensure!(
        msg.contains("spec.expiresAfter") && msg.contains("must be longer than zero"),
        "zero expiresAfter: {msg}"
    );
    Ok(())
}

async fn immutable_id(ctx: Ctx) -> anyhow::Result<()> {
    ctx.apply(&client("  clientId: first"))?;
    let msg = ctx.apply_refused(&client("  clientId: second"))?;
    ensure!(msg.contains("spec.clientId is immutable"), "{msg}");
    let msg = ctx.apply_refused(&client("  scopes: [a]"))?;
    ensure!(
        msg.contains("spec.clientId is immutable"),
        "removing the id: {msg}"
    );
    Ok(())
}

async fn examples(ctx: Ctx) -> anyhow::Result<()> {
    use oauth_operator::api::{InitialAccessToken, OAuthClient};
    let _controller = ctx.start_controller("http://127.0.0.1:1")?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let yaml = std::fs::read_to_string(&path)?;
            ctx.apply(&yaml)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            applied += 1;
        }
    }
    ensure!(applied > 0, "no examples found in {}", dir.display());

    // Every client, including the one whose secret comes from a Secret of the examples.
    let clients = ctx.api::<OAuthClient>().list(&Default::default()).await?;
    ensure!(
        clients.items.len() >= 4,
        "only {} clients",
        clients.items.len()
    );
    for client in &clients.items {
        ctx.wait_ready(&kube::ResourceExt::name_any(client)).await?;
    }
    let tokens: kube::Api<InitialAccessToken> = ctx.api();
    let names: Vec<String> = tokens
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(kube::ResourceExt::name_any)
        .collect();
    ensure!(
        !names.is_empty(),
        "no InitialAccessToken among the examples"
    );
    for name in names {
        crate::support::eventually(
            std::time::Duration::from_secs(60),
            &format!("InitialAccessToken {name} Ready"),
            || async {
                let t = tokens.get(&name).await?;
                let ready = t
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True");
                ensure!(ready, "not ready: {:?}", t.status);
                Ok(())
            },
        )
        .await?;
    }
    Ok(())
}
