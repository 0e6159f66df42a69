//! The token endpoint, end to end: YAML in, verifiable JWT out, RFC 6749 errors.

use anyhow::{Context as _, ensure};
use jsonwebtoken::decode_header;

use crate::support::{Ctx, TestFn, verify_token};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("token_issued_from_yaml_verifies_against_jwks", |c| {
            Box::pin(issued_token_verifies(c))
        }),
        ("wrong_secret_and_unknown_client_look_the_same", |c| {
            Box::pin(wrong_secret(c))
        }),
        ("malformed_token_requests_get_rfc6749_errors", |c| {
            Box::pin(malformed(c))
        }),
        ("discovery_and_metrics_describe_the_server", |c| {
            Box::pin(discovery_and_metrics(c))
        }),
        ("repeated_failures_lock_a_client_temporarily", |c| {
            Box::pin(lockout(c))
        }),
        (
            "introspection_says_inactive_for_expired_foreign_deactivated_and_deleted",
            |c| Box::pin(introspection(c)),
        ),
        ("revocation_reaches_every_replica", |c| {
            Box::pin(revocation(c))
        }),
        ("eddsa_signing_key_selectable", |c| {
            Box::pin(algorithm(c, "EdDSA"))
        }),
        ("rs256_signing_key_selectable", |c| {
            Box::pin(algorithm(c, "RS256"))
        }),
        ("signing_keys_rotate_without_a_failed_verification", |c| {
            Box::pin(key_rotation(c))
        }),
    ]
}

const CLIENT: &str = r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: billing
spec:
  clientId: billing-service
  scopes: [invoices.read, invoices.write]
  audiences: [https://api.example.test]
  accessTokenLifetimeSeconds: 600
"#;

async fn issued_token_verifies(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(CLIENT)?;
    let client = ctx.wait_ready("billing").await?;
    let status = client.status.context("status")?;
    ensure!(status.client_id.as_deref() == Some("billing-service"));
    ensure!(status.secret_name.as_deref() == Some("billing-credentials"));
    ensure!(status.observed_generation == client.metadata.generation);

    let (id, secret) = ctx.credentials("billing-credentials").await?;
    ensure!(id == "billing-service");
    ensure!(secret.len() >= 43, "secret too short");
    let endpoint = ctx
        .credentials_key("billing-credentials", "token_endpoint")
        .await?;
    ensure!(
        endpoint == format!("{}/token", server.url),
        "token_endpoint {endpoint}"
    );

    // client_secret_basic, asking for one scope.
    let (code, headers, body) = server
        .token(
            &ctx.http,
            Some((&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "invoices.read"),
            ],
        )
        .await?;
    ensure!(code == 200, "token request failed: {code} {body}");
    ensure!(
        headers
            .get("cache-control")
            .is_some_and(|v| v == "no-store")
    );
    ensure!(body["token_type"] == "Bearer");
    ensure!(body["expires_in"] == 600);
    ensure!(body["scope"] == "invoices.read");
    let jwt = body["access_token"].as_str().context("access_token")?;

    let header = decode_header(jwt)?;
    ensure!(header.typ.as_deref() == Some("at+jwt"));
    ensure!(header.kid.is_some(), "kid in header");
    let claims = verify_token(&ctx.http, &server, jwt, "https://api.example.test").await?;
    ensure!(claims.sub == "billing-service");
    ensure!(claims.client_id == "billing-service");
    ensure!(claims.scope.as_deref() == Some("invoices.read"));
    ensure!(claims.exp - claims.iat == 600);
    ensure!(claims.jti.len() >= 16);

    // client_secret_post, no scope asked: every allowed scope.
    let (code, _, body) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await?;
    ensure!(code == 200, "post auth failed: {code} {body}");
    ensure!(body["scope"] == "invoices.read invoices.write");

    // A scope outside the allowed set.
    let (code, _, body) = server
        .token(
            &ctx.http,
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await?;
    ensure!(
        code == 400 && body["error"] == "invalid_scope",
        "{code} {body}"
    );

    // The secret is nowhere in the client's status, and the verifier holds only a hash.
    let raw = serde_json::to_string(
        &ctx.api::<oauth_operator::api::OAuthClient>()
            .get("billing")
            .await?,
    )?;
    ensure!(!raw.contains(&secret), "secret leaked into the OAuthClient");
    let verifier = ctx
        .api::<oauth_operator::api::OAuthClientVerifier>()
        .get("billing")
        .await?;
    let v = serde_json::to_string(&verifier)?;
    ensure!(!v.contains(&secret), "secret leaked into the verifier");
    // A generated secret is verified by its SHA-256, with no argon2id hash at all.
    ensure!(
        verifier
            .spec
            .secrets
            .iter()
            .all(|s| s.sha256.is_some() && s.hash.is_none()),
        "{v}"
    );
    Ok(())
}

async fn wrong_secret(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("billing").await?;
    let (id, secret) = ctx.credentials("billing-credentials").await?;
    let grant = [("grant_type", "client_credentials")];

    let wrong = format!("{secret}x");
    let (code, headers, wrong_body) = server.token(&ctx.http, Some((&id, &wrong)), &grant).await?;
    ensure!(code == 401, "wrong secret gave {code}");
    ensure!(wrong_body["error"] == "invalid_client");
    ensure!(
        headers
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().is_ok_and(|s| s.starts_with("Basic")))
    );
    ensure!(
        headers
            .get("cache-control")
            .is_some_and(|v| v == "no-store")
    );

    let (code, _, unknown_body) = server
        .token(&ctx.http, Some(("nobody", &secret)), &grant)
        .await?;
    ensure!(code == 401);
    ensure!(
        unknown_body == wrong_body,
        "unknown client and wrong secret differ: {unknown_body} vs {wrong_body}"
    );

    // Post auth with a wrong secret: 401 too.
    let (code, _, body) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "nope"),
            ],
        )
        .await?;
    ensure!(code == 401 && body["error"] == "invalid_client");
    // The right secret still works after the failures.
    let (code, _, _) = server
        .token(&ctx.http, Some((&id, &secret)), &grant)
        .await?;
    ensure!(code == 200);
    Ok(())
}

async fn malformed(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("billing").await?;
    let (id, secret) = ctx.credentials("billing-credentials").await?;
    let url = format!("{}/token", server.url);
    let form = "application/x-www-form-urlencoded";

    // (description, content type, body, basic auth, expected status, expected error)
    let cases: Vec<(&str, &str, String, bool, u16, &str)> = vec![
        (
            "wrong content type",
            "application/json",
            r#"{"grant_type":"client_credentials"}"#.into(),
            true,
            400,
            "invalid_request",
        ),
        (
            "missing grant_type",
            form,
            String::new(),
            true,
            400,
            "invalid_request",
        ),
        (
            "unknown grant type",
            form,
            "grant_type=password".into(),
            true,
            400,
            "unsupported_grant_type",
        ),
        (
            "repeated parameter",
            form,
            "grant_type=client_credentials&grant_type=client_credentials".into(),
            true,
            400,
            "invalid_request",
        ),
        (
            "two auth methods",
            form,
            format!("grant_type=client_credentials&client_secret={secret}"),
            true,
            400,
            "invalid_request",
        ),
        (
            "no credentials",
            form,
            "grant_type=client_credentials".into(),
            false,
            401,
            "invalid_client",
        ),
        (
            "oversized body",
            form,
            format!(
                "grant_type=client_credentials&pad={}",
                "a".repeat(64 * 1024)
            ),
            true,
            400,
            "invalid_request",
        ),
    ];
    for (what, ct, body, basic, status, error) in cases {
        let mut req = ctx.http.post(&url).header("content-type", ct).body(body);
        if basic {
            req = req.basic_auth(&id, Some(&secret));
        }
        let res = req.send().await?;
        let code = res.status().as_u16();
        let no_store = res
            .headers()
            .get("cache-control")
            .is_some_and(|v| v == "no-store");
        let json: serde_json::Value = res.json().await.unwrap_or_default();
        ensure!(
            code == status,
            "{what}: status {code}, expected {status} ({json})"
        );
        ensure!(
            json["error"] == error,
            "{what}: error {}, expected {error}",
            json["error"]
        );
        ensure!(no_store, "{what}: no Cache-Control: no-store");
        ensure!(!json.to_string().contains(&secret), "{what}: secret echoed");
    }
    Ok(())
}

async fn discovery_and_metrics(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let doc: serde_json::Value = ctx
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await?
            .json()
            .await?;
        ensure!(doc["issuer"] == server.url.as_str(), "{path}: {doc}");
        ensure!(doc["token_endpoint"] == format!("{}/token", server.url));
        ensure!(doc["jwks_uri"] == format!("{}/jwks", server.url));
        ensure!(
            doc["grant_types_supported"]
                == serde_json::json!(["authorization_code", "client_credentials", "refresh_token"])
        );
        ensure!(
            doc["token_endpoint_auth_methods_supported"]
                == serde_json::json!([
                    "client_secret_basic",
                    "client_secret_post",
                    "private_key_jwt",
                    "none"
                ])
        );
        // Assertions are checked against an asymmetric allow-list only: no `none`, no HMAC.
        let algorithms = serde_json::json!([
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"
        ]);
        for endpoint in ["token", "introspection", "revocation"] {
            ensure!(
                doc[format!("{endpoint}_endpoint_auth_signing_alg_values_supported")] == algorithms,
                "{path}: {endpoint}: {doc}"
            );
        }
        for endpoint in ["introspection", "revocation"] {
            ensure!(
                doc[format!("{endpoint}_endpoint_auth_methods_supported")]
                    == serde_json::json!([
                        "client_secret_basic",
                        "client_secret_post",
                        "private_key_jwt"
                    ]),
                "{path}: {endpoint}: {doc}"
            );
        }
        ensure!(doc["authorization_endpoint"] == format!("{}/authorize", server.url));
        ensure!(doc["code_challenge_methods_supported"] == serde_json::json!(["S256"]));
        ensure!(doc["access_token_signing_alg_values_supported"] == serde_json::json!(["ES256"]));
        ensure!(doc["introspection_endpoint"] == format!("{}/introspect", server.url));
        ensure!(doc["revocation_endpoint"] == format!("{}/revoke", server.url));
    }

    ctx.apply(CLIENT)?;
    ctx.wait_ready("billing").await?;
    let (id, secret) = ctx.credentials("billing-credentials").await?;
    let grant = [("grant_type", "client_credentials")];
    for _ in 0..3 {
        ensure!(
            server
                .token(&ctx.http, Some((&id, &secret)), &grant)
                .await?
                .0
                == 200
        );
    }
    ensure!(
        server
            .token(&ctx.http, Some((&id, "wrong")), &grant)
            .await?
            .0
            == 401
    );

    let text = server.metrics(&ctx.http).await?;
    let value = |name: &str| crate::support::metric(&text, name);
    ensure!(value("oauth_operator_tokens_issued_total") == 3.0, "{text}");
    ensure!(
        value("oauth_operator_token_refusals_total{reason=\"invalid_client\"}") == 1.0,
        "{text}"
    );
    // A generated secret never reaches argon2 or its warm cache.
    ensure!(
        value("oauth_operator_verified_cache_hits_total") == 0.0,
        "{text}"
    );
    ensure!(
        value("oauth_operator_verified_cache_misses_total") == 0.0,
        "{text}"
    );
    ensure!(value("oauth_operator_indexed_clients") == 1.0, "{text}");
    ensure!(
        value("oauth_operator_token_request_seconds_count") == 4.0,
        "{text}"
    );
    ensure!(!text.contains(&secret));
    Ok(())
}

/// The lockout protects chosen secrets (argon2id): after three failures the right secret
/// is refused until the wait passed, except for a holder that authenticated before (warm).
/// A generated secret under the same guesses is never locked.
async fn lockout(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx
        .start_stack_with(&[
            "--lockout-failures=3",
            "--lockout-wait=4s",
            "--lockout-max-wait=4s",
        ])
        .await?;
    let (id, secret) = ctx.chosen_client("cold", "cold-chosen-secret-1b2a").await?;
    let (warm_id, warm_secret) = ctx.chosen_client("warm", "warm-chosen-secret-3c4d").await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("billing").await?;
    let (generated_id, generated_secret) = ctx.credentials("billing-credentials").await?;
    let grant = [("grant_type", "client_credentials")];
    // The warm client authenticates once, so its secret is in the verified cache.
    ensure!(
        server
            .token(&ctx.http, Some((&warm_id, &warm_secret)), &grant)
            .await?
            .0
            == 200
    );

    for c in [&id, &warm_id, &generated_id] {
        for _ in 0..3 {
            ensure!(server.token(&ctx.http, Some((c, "guess")), &grant).await?.0 == 401);
        }
    }
    // Locked: even the right secret is refused, exactly like a wrong one.
    let (code, _, body) = server
        .token(&ctx.http, Some((&id, &secret)), &grant)
        .await?;
    ensure!(
        code == 401 && body["error"] == "invalid_client",
        "not locked: {code} {body}"
    );
    // A secret that already passed argon2 still works: the lock stops guessing only.
    ensure!(
        server
            .token(&ctx.http, Some((&warm_id, &warm_secret)), &grant)
            .await?
            .0
            == 200
    );
    // A generated secret is never locked: nothing can be guessed against it.
    ensure!(
        server
            .token(&ctx.http, Some((&generated_id, &generated_secret)), &grant)
            .await?
            .0
            == 200,
        "the holder of a generated secret was refused"
    );
    // Unknown ids are never tracked, so they cannot grow the lockout state.
    for _ in 0..5 {
        ensure!(
            server
                .token(&ctx.http, Some(("nobody", "guess")), &grant)
                .await?
                .0
                == 401
        );
    }
    let metrics = server.metrics(&ctx.http).await?;
    ensure!(
        metrics.contains("oauth_operator_client_lockouts_total 2"),
        "{metrics}"
    );
    ensure!(
        metrics.contains("oauth_operator_locked_refusals_total 1"),
        "{metrics}"
    );

    // The lock lasts the configured wait, no longer.
    crate::support::eventually(
        std::time::Duration::from_secs(15),
        "lock expired",
        || async {
            let (code, _, _) = server
                .token(&ctx.http, Some((&id, &secret)), &grant)
                .await?;
            ensure!(code == 200, "still locked: {code}");
            Ok(())
        },
    )
    .await
}

async fn introspection(ctx: Ctx) -> anyhow::Result<()> {
    use oauth_operator::auth::keys::{KeySet, SECRET_KEY, StoredKeys};
    use oauth_operator::auth::token::{AccessTokenClaims, sign};

    let (_controller, server) = ctx.start_stack().await?;
    let rs = "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: rs\nspec:\n  clientId: resource-server\n";
    let app = "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: app\nspec:\n  clientId: app\n  scopes: [read]\n";
    ctx.apply(&format!("{rs}---\n{app}"))?;
    ctx.wait_ready("rs").await?;
    ctx.wait_ready("app").await?;
    let (rs_id, rs_secret) = ctx.credentials("rs-credentials").await?;
    let (app_id, app_secret) = ctx.credentials("app-credentials").await?;
    // A token for `id`, once the server has caught up with the client's latest state.
    let served = |id: String, secret: String, what: &'static str| {
        let (server, http) = (&server, ctx.http.clone());
        async move {
            crate::support::eventually(std::time::Duration::from_secs(15), what, || {
                server.issue(&http, &id, &secret)
            })
            .await
        }
    };
    let t1 = served(app_id.clone(), app_secret.clone(), "token").await?;

    let introspect = |token: String| {
        let (http, url, id, secret) = (
            ctx.http.clone(),
            server.url.clone(),
            rs_id.clone(),
            rs_secret.clone(),
        );
        async move {
            let res = http
                .post(format!("{url}/introspect"))
                .basic_auth(id, Some(secret))
                .form(&[("token", token.as_str())])
                .send()
                .await?;
            anyhow::ensure!(
                res.status() == 200,
                "introspection answered {}",
                res.status()
            );
            Ok::<serde_json::Value, anyhow::Error>(res.json().await?)
        }
    };
    let active = introspect(t1.clone()).await?;
    ensure!(active["active"] == true, "{active}");
    ensure!(
        active["client_id"] == "app"
            && active["scope"] == "read"
            && active["token_type"] == "Bearer"
    );

    // Only authenticated clients may introspect.
    let res = ctx
        .http
        .post(format!("{}/introspect", server.url))
        .form(&[("token", t1.as_str())])
        .send()
        .await?;
    ensure!(res.status() == 401);
    let res = ctx
        .http
        .post(format!("{}/introspect", server.url))
        .basic_auth(&rs_id, Some(&rs_secret))
        .form(&[("x", "y")])
        .send()
        .await?;
    ensure!(res.status() == 400);

    ensure!(introspect("not-a-jwt".into()).await?["active"] == false);
    // Signed by this server's own key, but expired; and a control that is not.
    let stored = ctx
        .api::<k8s_openapi::api::core::v1::Secret>()
        .get("oauth-operator-signing-keys")
        .await?;
    let json = stored
        .data
        .and_then(|d| d.get(SECRET_KEY).cloned())
        .context("keys.json")?;
    let ours = KeySet::load(&StoredKeys::from_json(&json.0)?)?;
    let now = jiff::Timestamp::now().as_second();
    let claims = |exp: i64| AccessTokenClaims {
        iss: server.url.clone(),
        sub: "app".into(),
        aud: vec![server.url.clone()],
        exp,
        iat: now - 100,
        jti: "test".into(),
        client_id: "app".into(),
        scope: None,
        roles: vec![],
        // A token without the claim (as issued before it existed) is judged by the rest.
        client_uid: None,
        grant_id: None,
        auth_time: None,
        upstream: None,
        client_auth_method: None,
    };
    ensure!(
        introspect(sign(&claims(now + 600), ours.signer(now))?).await?["active"] == true,
        "control token"
    );
    ensure!(
        introspect(sign(&claims(now - 10), ours.signer(now))?).await?["active"] == false,
        "expired"
    );
    // Same claims, another key: foreign.
    let foreign = KeySet::load(&StoredKeys::generate_es256()?)?;
    ensure!(
        introspect(sign(&claims(now + 600), foreign.signer(now))?).await?["active"] == false,
        "foreign"
    );

    // Deactivation makes earlier tokens inactive, and reactivation does not bring them back.
    ctx.apply(&app.replace("scopes: [read]", "scopes: [read]\n  active: false"))?;
    crate::support::eventually(
        std::time::Duration::from_secs(15),
        "deactivated",
        || async {
            ensure!(introspect(t1.clone()).await?["active"] == false);
            Ok(())
        },
    )
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ctx.apply(app)?;
    let t2 = served(app_id, app_secret, "reactivated").await?;
    ensure!(
        introspect(t1.clone()).await?["active"] == false,
        "a token from before the deactivation came back"
    );
    ensure!(introspect(t2.clone()).await?["active"] == true);

    // A deleted client's tokens are inactive.
    ctx.api::<oauth_operator::api::OAuthClient>()
        .delete("app", &Default::default())
        .await?;
    crate::support::eventually(std::time::Duration::from_secs(15), "deleted", || async {
        ensure!(introspect(t2.clone()).await?["active"] == false);
        Ok(())
    })
    .await?;

    // Applied again under the same clientId (a GitOps re-sync, say), it is a new client:
    // its own tokens are active, the deleted one's stay inactive.
    let secrets = ctx.api::<k8s_openapi::api::core::v1::Secret>();
    crate::support::eventually(
        std::time::Duration::from_secs(30),
        "old Secret collected",
        || async {
            ensure!(secrets.get_opt("app-credentials").await?.is_none());
            Ok(())
        },
    )
    .await?;
    ctx.apply(app)?;
    ctx.wait_ready("app").await?;
    let (app_id, app_secret) = ctx.credentials("app-credentials").await?;
    let t3 = served(app_id, app_secret, "recreated client served").await?;
    ensure!(introspect(t3).await?["active"] == true);
    ensure!(
        introspect(t2).await?["active"] == false,
        "the deleted client's token came back with its successor"
    );
    Ok(())
}

async fn revocation(ctx: Ctx) -> anyhow::Result<()> {
    // Two token servers, as two replicas: revoke at one, introspect at the other.
    let port = envtest::free_port()?;
    let _controller = ctx.start_controller(&format!("http://127.0.0.1:{port}"))?;
    let a = ctx.start_server(port).await?;
    let b_port = envtest::free_port()?;
    // Same issuer for both replicas, as behind one Service.
    let b = ctx
        .start_server_with(b_port, &[&format!("--issuer=http://127.0.0.1:{port}")])
        .await?;
    let ((id, secret), (other_id, other_secret)) = billing_and_twin(&ctx, "other").await?;
    let grant = [("grant_type", "client_credentials")];
    let (_, _, body) = a.token(&ctx.http, Some((&id, &secret)), &grant).await?;
    let token = body["access_token"].as_str().context("token")?.to_string();

    let post = |url: &str, path: &str, who: (&str, &str), token: &str| {
        ctx.http
            .post(format!("{url}{path}"))
            .basic_auth(who.0, Some(who.1))
            .form(&[("token", token)])
            .send()
    };
    let active_at_b = |token: String| {
        let req = post(&b.url, "/introspect", (&other_id, &other_secret), &token);
        async move {
            let v: serde_json::Value = req.await?.json().await?;
            Ok::<_, anyhow::Error>(v["active"] == true)
        }
    };
    ensure!(
        active_at_b(token.clone()).await?,
        "fresh token active at the other replica"
    );

    // Another client may not revoke it.
    let res = post(&a.url, "/revoke", (&other_id, &other_secret), &token).await?;
    ensure!(res.status() == 400, "foreign revocation: {}", res.status());
    ensure!(active_at_b(token.clone()).await?);
    // Garbage is a no-op with 200, as RFC 7009 says.
    ensure!(
        post(&a.url, "/revoke", (&id, &secret), "garbage")
            .await?
            .status()
            == 200
    );

    let res = post(&a.url, "/revoke", (&id, &secret), &token).await?;
    ensure!(res.status() == 200, "revocation: {}", res.status());
    crate::support::eventually(
        std::time::Duration::from_secs(15),
        "revocation seen by the other replica",
        || async {
            ensure!(!active_at_b(token.clone()).await?, "still active at b");
            Ok(())
        },
    )
    .await?;
    // Revoking twice is fine, and new tokens are unaffected.
    ensure!(
        post(&a.url, "/revoke", (&id, &secret), &token)
            .await?
            .status()
            == 200
    );
    let (_, _, body) = b.token(&ctx.http, Some((&id, &secret)), &grant).await?;
    let fresh = body["access_token"].as_str().context("token")?.to_string();
    ensure!(active_at_b(fresh).await?);
    Ok(())
}

async fn algorithm(ctx: Ctx, alg: &'static str) -> anyhow::Result<()> {
    let port = envtest::free_port()?;
    let _controller = ctx.start_controller_with(
        &format!("http://127.0.0.1:{port}"),
        &[&format!("--signing-algorithm={alg}")],
    )?;
    let server = ctx.start_server(port).await?;
    ctx.apply(CLIENT)?;
    ctx.wait_ready("billing").await?;
    let (id, secret) = ctx.credentials("billing-credentials").await?;
    let jwt = &server.issue(&ctx.http, &id, &secret).await?;
    ensure!(
        format!("{:?}", decode_header(jwt)?.alg) == alg,
        "header alg"
    );
    let claims = verify_token(&ctx.http, &server, jwt, "https://api.example.test").await?;
    ensure!(claims.client_id == "billing-service");
    let doc: serde_json::Value = ctx
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.url
        ))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        doc["access_token_signing_alg_values_supported"] == serde_json::json!([alg]),
        "{doc}"
    );
    Ok(())
}

/// Applies CLIENT and a twin named `name` (client id `<name>-service`), waits until both
/// are Ready, and returns both credentials.
async fn billing_and_twin(
    ctx: &Ctx,
    name: &str,
) -> anyhow::Result<((String, String), (String, String))> {
    let twin = CLIENT
        .replace("name: billing", &format!("name: {name}"))
        .replace(
            "clientId: billing-service",
            &format!("clientId: {name}-service"),
        );
    ctx.apply(&format!("{CLIENT}---\n{twin}"))?;
    ctx.wait_ready("billing").await?;
    ctx.wait_ready(name).await?;
    Ok((
        ctx.credentials("billing-credentials").await?,
        ctx.credentials(&format!("{name}-credentials")).await?,
    ))
}

/// Rotation every 15 s with a 5 s publish lead and 60 s tokens: polls `/jwks` and `/token`
/// twice a second until two rotations happened and the first key was retired, checking
/// throughout that every unexpired token verifies against the `/jwks` of that moment.
async fn key_rotation(ctx: Ctx) -> anyhow::Result<()> {
    use jsonwebtoken::jwk::JwkSet;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    let port = envtest::free_port()?;
    let _controller = ctx.start_controller_with(
        &format!("http://127.0.0.1:{port}"),
        &[
            "--signing-key-rotation=15s",
            "--signing-key-publish-lead=5s",
            "--min-token-lifetime=60",
            "--max-token-lifetime=60",
        ],
    )?;
    let server = ctx.start_server(port).await?;
    ctx.apply(&CLIENT.replace(
        "accessTokenLifetimeSeconds: 600",
        "accessTokenLifetimeSeconds: 60",
    ))?;
    ctx.wait_ready("billing").await?;
    let (id, secret) = ctx.credentials("billing-credentials").await?;

    let mut published: HashMap<String, Instant> = HashMap::new();
    let mut retired: HashMap<String, i64> = HashMap::new();
    let mut signed: Vec<String> = Vec::new();
    let mut first_signed: HashMap<String, Instant> = HashMap::new();
    // (kid, exp, jwt) of every token issued.
    let mut tokens: Vec<(String, i64, String)> = Vec::new();
    let started = Instant::now();
    loop {
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "no two rotations and a retirement in 180 s: signed by {signed:?}, retired {retired:?}"
        );
        let jwks: JwkSet = ctx
            .http
            .get(format!("{}/jwks", server.url))
            .send()
            .await?
            .json()
            .await?;
        let now = jiff::Timestamp::now().as_second();
        let kids: Vec<String> = jwks
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        for kid in &kids {
            published.entry(kid.clone()).or_insert_with(Instant::now);
        }
        for kid in published.keys() {
            if !kids.contains(kid) {
                retired.entry(kid.clone()).or_insert(now);
            }
        }
        // Every token still unexpired verifies against the keys published right now.
        for (kid, exp, jwt) in tokens.iter().filter(|(_, exp, _)| *exp > now + 1) {
            let jwk = jwks.find(kid).with_context(|| {
                format!("key {kid} left /jwks while its token lives until {exp}")
            })?;
            let mut v = jsonwebtoken::Validation::new(decode_header(jwt)?.alg);
            v.set_audience(&["https://api.example.test"]);
            v.set_issuer(&[server.url.as_str()]);
            jsonwebtoken::decode::<serde_json::Value>(
                jwt,
                &jsonwebtoken::DecodingKey::from_jwk(jwk)?,
                &v,
            )
            .with_context(|| format!("token signed by {kid} no longer verifies"))?;
        }

        let jwt = server.issue(&ctx.http, &id, &secret).await?;
        let kid = decode_header(&jwt)?.kid.context("kid")?;
        let exp = jiff::Timestamp::now().as_second() + 60;
        if !signed.contains(&kid) {
            signed.push(kid.clone());
            first_signed.insert(kid.clone(), Instant::now());
        }
        tokens.push((kid, exp, jwt));

        if signed.len() >= 3 && retired.contains_key(&signed[0]) {
            break;
        }
        tokens.retain(|(_, exp, _)| *exp > now - 5);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Each new key was in /jwks well before its first signature (the lead is 5 s; the
    // controller looks once a second and the server's watch adds a moment).
    for kid in &signed[1..] {
        let lead = first_signed[kid].duration_since(published[kid]);
        ensure!(
            lead >= Duration::from_secs(3),
            "key {kid} signed {lead:?} after it was published"
        );
    }
    Ok(())
}
