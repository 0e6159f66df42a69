//! The apiserver itself refuses bad manifests, with a message naming the field; and every
//! example in examples/ is accepted.

use anyhow::ensure;

use crate::support::{Ctx, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("bad_manifests_are_refused_naming_the_field", |c| {
            Box::pin(refused(c))
        }),
        ("client_id_cannot_change", |c| Box::pin(immutable_id(c))),
        ("every_example_applies", |c| Box::pin(examples(c))),
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
            "token without expiry",
            "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: t\nspec:\n  count: 1\n".to_string(),
            "exactly one of spec.expiresAfter and spec.expiresAt",
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
    Ok(())
}
