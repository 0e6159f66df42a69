//! Dynamic client registration (RFC 7591 / 7592) with InitialAccessTokens, on the real
//! control plane with a controller and two token-server processes.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use oauth_operator::api::{InitialAccessToken, OAuthClient};
use serde_json::{Value, json};

use crate::support::{Ctx, Proc, Server, TestFn, eventually, verify_token};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("registration_yields_a_working_client", |c| {
            Box::pin(registration_works(c))
        }),
        ("concurrent_registrations_never_exceed_the_count", |c| {
            Box::pin(concurrent(c))
        }),
        (
            "expired_deleted_exhausted_and_wrong_tokens_are_refused",
            |c| Box::pin(refused_tokens(c)),
        ),
        ("bad_client_metadata_is_refused_and_nothing_created", |c| {
            Box::pin(bad_metadata(c))
        }),
        ("client_configuration_endpoint_reads_updates_deletes", |c| {
            Box::pin(configuration_endpoint(c))
        }),
        ("a_failed_registration_gives_its_slot_back", |c| {
            Box::pin(failed_registration_releases(c))
        }),
    ]
}

const API: &str = "https://api.example.test";

/// A controller and two token servers sharing one issuer (the first's URL).
async fn start(ctx: &Ctx) -> anyhow::Result<(Proc, Server, Server)> {
    let (port_a, port_b) = (envtest::free_port()?, envtest::free_port()?);
    let issuer = format!("http://127.0.0.1:{port_a}");
    let controller = ctx.start_controller(&issuer)?;
    let a = ctx.start_server(port_a).await?;
    let b = ctx
        .start_server_with(port_b, &[&format!("--issuer={issuer}")])
        .await?;
    Ok((controller, a, b))
}

/// Applies an InitialAccessToken, waits until it is Ready and returns its value.
pub(crate) async fn initial_access_token(
    ctx: &Ctx,
    name: &str,
    count: u32,
    expires: &str,
) -> anyhow::Result<String> {
    ctx.apply(&format!(
        r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: InitialAccessToken
metadata:
  name: {name}
spec:
  {expires}
  count: {count}
  policy:
    grantTypes: [client_credentials, authorization_code]
    scopes: [invoices.read, invoices.write]
    audiences: [{API}]
    maxAccessTokenLifetimeSeconds: 600
"#
    ))?;
    let api = ctx.api::<InitialAccessToken>();
    eventually(
        Duration::from_secs(30),
        "initial access token Ready",
        || async {
            let iat = api.get(name).await?;
            let ready = iat
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ensure!(ready, "{:?}", iat.status);
            Ok(())
        },
    )
    .await?;
    ctx.credentials_key(&format!("{name}-token"), "token").await
}

pub(crate) async fn register(
    ctx: &Ctx,
    server: &Server,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut req = ctx.http.post(format!("{}/register", server.url)).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    Ok((status, headers, res.json().await.unwrap_or(Value::Null)))
}

pub(crate) fn m2m(name: &str) -> Value {
    json!({
        "client_name": name,
        "grant_types": ["client_credentials"],
        "scope": "invoices.read",
        "software_id": "ignored-extension",
    })
}

async fn registered_clients(ctx: &Ctx, token: &str) -> anyhow::Result<usize> {
    let list = ctx
        .api::<OAuthClient>()
        .list(&kube::api::ListParams::default().labels(&format!(
            "{}={token}",
            oauth_operator::api::REGISTERED_BY_LABEL
        )))
        .await?;
    Ok(list.items.len())
}

/// Fails if any of `values` appears in the resources, Events or process logs of the test.
fn assert_nowhere(ctx: &Ctx, procs: &[&Proc], values: &[&str]) -> anyhow::Result<()> {
    let out = ctx.kubectl(
        &[
            "get",
            "oauthclients,initialaccesstokens,oauthclientverifiers,initialaccesstokenverifiers,events",
            "-o",
            "yaml",
        ],
        None,
    )?;
    ensure!(out.status.success(), "kubectl get failed");
    let resources = String::from_utf8_lossy(&out.stdout);
    let logs: String = procs.iter().map(|p| p.log_text()).collect();
    for v in values {
        ensure!(
            !resources.contains(v),
            "a secret value appears in resources or Events"
        );
        ensure!(!logs.contains(v), "a secret value appears in a log");
    }
    Ok(())
}

async fn registration_works(ctx: Ctx) -> anyhow::Result<()> {
    let (controller, a, b) = start(&ctx).await?;
    let iat = initial_access_token(&ctx, "partners", 3, "expiresAfter: 1h").await?;

    let doc: Value = ctx
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", a.url))
        .send()
        .await?
        .json()
        .await?;
    ensure!(doc["registration_endpoint"] == json!(format!("{}/register", a.url)));

    let (code, headers, body) = register(&ctx, &a, Some(&iat), &m2m("Invoice exporter")).await?;
    ensure!(code == 201, "{code} {body}");
    ensure!(
        headers
            .get("cache-control")
            .is_some_and(|v| v == "no-store")
    );
    let id = body["client_id"].as_str().context("client_id")?.to_string();
    let secret = body["client_secret"]
        .as_str()
        .context("client_secret")?
        .to_string();
    let rat = body["registration_access_token"]
        .as_str()
        .context("registration_access_token")?
        .to_string();
    ensure!(body["client_id_issued_at"].as_i64().is_some_and(|t| t > 0));
    let now = jiff::Timestamp::now().as_second();
    ensure!(
        body["client_secret_expires_at"]
            .as_i64()
            .is_some_and(|t| t > now + 300 * 86_400)
    );
    ensure!(body["registration_client_uri"] == json!(format!("{}/register/{id}", a.url)));
    ensure!(body["grant_types"] == json!(["client_credentials"]));
    ensure!(body["scope"] == json!("invoices.read"));
    ensure!(body["client_name"] == json!("Invoice exporter"));
    ensure!(body["token_endpoint_auth_method"] == json!("client_secret_basic"));
    ensure!(
        body.get("software_id").is_none(),
        "unknown metadata is not echoed"
    );

    // Works at once on the replica that answered, and on the other within moments.
    let jwt = a
        .issue(&ctx.http, &id, &secret)
        .await
        .context("token right after registration")?;
    let claims = verify_token(&ctx.http, &a, &jwt, API).await?;
    ensure!(claims.client_id == id);
    ensure!(claims.scope.as_deref() == Some("invoices.read"));
    eventually(
        Duration::from_secs(3),
        "token from the second replica",
        || async { b.issue(&ctx.http, &id, &secret).await.map(|_| ()) },
    )
    .await?;

    // An ordinary OAuthClient, labelled with its token, counted in the token's status.
    let client = ctx.api::<OAuthClient>().get(&id).await?;
    ensure!(client.spec.client_id.as_deref() == Some(id.as_str()));
    ensure!(client.spec.audiences == vec![API.to_string()]);
    ensure!(client.spec.access_token_lifetime_seconds == 600);
    ensure!(registered_clients(&ctx, "partners").await? == 1);
    let status = ctx
        .api::<InitialAccessToken>()
        .get("partners")
        .await?
        .status
        .context("status")?;
    ensure!(status.registered_clients.len() == 1 && status.registered_clients[0].client_id == id);
    ensure!(status.remaining == Some(2), "{:?}", status.remaining);

    // A public client: no secret, authorization_code with a loopback redirect.
    let (code, _, public) = register(
        &ctx,
        &b,
        Some(&iat),
        &json!({
            "client_name": "CLI",
            "token_endpoint_auth_method": "none",
            "redirect_uris": ["http://127.0.0.1:8400/callback"],
        }),
    )
    .await?;
    ensure!(code == 201, "{public}");
    ensure!(public.get("client_secret").is_none());
    ensure!(public["grant_types"] == json!(["authorization_code"]));
    ensure!(public["token_endpoint_auth_method"] == json!("none"));

    ctx.wait_ready(&id).await?;
    assert_nowhere(
        &ctx,
        &[&controller, a.process(), b.process()],
        &[&secret, &rat, &iat],
    )
}

async fn concurrent(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, a, b) = start(&ctx).await?;
    let iat = initial_access_token(&ctx, "burst", 10, "expiresAfter: 1h").await?;
    let servers = [&a, &b];
    let requests = (0..50).map(|i| {
        let server = servers[i % 2];
        let (ctx, iat) = (&ctx, &iat);
        async move { register(ctx, server, Some(iat), &m2m(&format!("c{i}"))).await }
    });
    let results = futures::future::join_all(requests).await;
    let mut created = Vec::new();
    let mut refused = 0;
    for r in results {
        let (code, headers, body) = r?;
        match code {
            201 => created.push(body["client_id"].as_str().context("id")?.to_string()),
            401 => {
                ensure!(body["error"] == json!("invalid_token"), "{body}");
                ensure!(headers.get("www-authenticate").is_some());
                refused += 1;
            }
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    ensure!(created.len() == 10, "{} clients created", created.len());
    ensure!(refused == 40, "{refused} refused");
    ensure!(registered_clients(&ctx, "burst").await? == 10);
    let iat_api = ctx.api::<InitialAccessToken>();
    let status = iat_api.get("burst").await?.status.context("status")?;
    let mut listed: Vec<String> = status
        .registered_clients
        .iter()
        .map(|c| c.client_id.clone())
        .collect();
    listed.sort();
    created.sort();
    ensure!(
        listed == created,
        "status lists exactly the created clients"
    );
    eventually(Duration::from_secs(20), "Exhausted condition", || async {
        let s = iat_api.get("burst").await?.status.context("status")?;
        ensure!(s.remaining == Some(0));
        ensure!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "Exhausted" && c.status == "True")
        );
        ensure!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "Exhausted")
        );
        Ok(())
    })
    .await
}

async fn refused_tokens(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, a, b) = start(&ctx).await?;
    let refused = |r: (u16, reqwest::header::HeaderMap, Value)| -> anyhow::Result<()> {
        let (code, headers, body) = r;
        ensure!(
            code == 401 && body["error"] == json!("invalid_token"),
            "{code} {body}"
        );
        ensure!(
            headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("Bearer"))
        );
        Ok(())
    };
    let once = initial_access_token(&ctx, "once", 1, "expiresAfter: 1h").await?;
    refused(register(&ctx, &a, None, &m2m("x")).await?).context("no token")?;
    refused(register(&ctx, &a, Some("nodot"), &m2m("x")).await?).context("malformed")?;
    let (id, _) = once.split_once('.').context("token format")?;
    refused(register(&ctx, &a, Some(&format!("{id}.wrong")), &m2m("x")).await?)
        .context("wrong secret")?;
    refused(register(&ctx, &a, Some("unknown.token"), &m2m("x")).await?).context("unknown id")?;

    // Exhausted after one.
    let (code, _, body) = register(&ctx, &a, Some(&once), &m2m("first")).await?;
    ensure!(code == 201, "{body}");
    refused(register(&ctx, &b, Some(&once), &m2m("second")).await?).context("exhausted")?;

    // Expired: a token that lives 6 seconds.
    let short = initial_access_token(&ctx, "short", 5, "expiresAfter: 6s").await?;
    let iat_api = ctx.api::<InitialAccessToken>();
    eventually(Duration::from_secs(20), "Expired condition", || async {
        let s = iat_api.get("short").await?.status.context("status")?;
        ensure!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "Expired" && c.status == "True")
        );
        Ok(())
    })
    .await?;
    refused(register(&ctx, &a, Some(&short), &m2m("late")).await?).context("expired")?;
    let events = ctx.kubectl(&["get", "events", "-o", "yaml"], None)?;
    ensure!(String::from_utf8_lossy(&events.stdout).contains("The initial access token expired"));

    // Deleted: refused within seconds, on both replicas.
    let gone = initial_access_token(&ctx, "gone", 5, "expiresAfter: 1h").await?;
    iat_api.delete("gone", &Default::default()).await?;
    for server in [&a, &b] {
        eventually(Duration::from_secs(10), "deleted token refused", || async {
            refused(register(&ctx, server, Some(&gone), &m2m("after-delete")).await?)
        })
        .await?;
    }

    // Nothing was created but the one registration that was allowed.
    let all = ctx.api::<OAuthClient>().list(&Default::default()).await?;
    ensure!(all.items.len() == 1, "{} clients", all.items.len());
    Ok(())
}

async fn bad_metadata(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, a, _b) = start(&ctx).await?;
    let iat = initial_access_token(&ctx, "strict", 5, "expiresAfter: 1h").await?;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "grant type outside the policy",
            json!({"grant_types": ["refresh_token"]}),
            "invalid_client_metadata",
        ),
        (
            "unsupported grant type",
            json!({"grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            "scope outside the policy",
            json!({"grant_types": ["client_credentials"], "scope": "admin"}),
            "invalid_client_metadata",
        ),
        (
            "unknown auth method",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            "public client_credentials",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            "grant_types not a list",
            json!({"grant_types": "client_credentials"}),
            "invalid_client_metadata",
        ),
        (
            "name too long",
            json!({"grant_types": ["client_credentials"], "client_name": "x".repeat(201)}),
            "invalid_client_metadata",
        ),
        (
            "authorization_code without redirect",
            json!({"grant_types": ["authorization_code"]}),
            "invalid_redirect_uri",
        ),
        (
            "plain http redirect",
            json!({"grant_types": ["authorization_code"], "redirect_uris": ["http://app.example.test/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            "redirect with fragment",
            json!({"grant_types": ["authorization_code"], "redirect_uris": ["https://app.example.test/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            "relative redirect",
            json!({"grant_types": ["authorization_code"], "redirect_uris": ["/cb"]}),
            "invalid_redirect_uri",
        ),
    ];
    for (what, body, error) in cases {
        let (code, headers, got) = register(&ctx, &a, Some(&iat), &body).await?;
        ensure!(
            code == 400 && got["error"] == json!(error),
            "{what}: {code} {got}"
        );
        ensure!(
            got["error_description"].is_string(),
            "{what}: a description says what to fix"
        );
        ensure!(
            headers
                .get("cache-control")
                .is_some_and(|v| v == "no-store"),
            "{what}"
        );
    }
    // Not JSON at all.
    let res = ctx
        .http
        .post(format!("{}/register", a.url))
        .bearer_auth(&iat)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("client_name=x")
        .send()
        .await?;
    ensure!(res.status().as_u16() == 400);
    let res = ctx
        .http
        .post(format!("{}/register", a.url))
        .bearer_auth(&iat)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    ensure!(res.status().as_u16() == 400);
    let body: Value = res.json().await?;
    ensure!(body["error"] == json!("invalid_client_metadata"));

    ensure!(
        ctx.api::<OAuthClient>()
            .list(&Default::default())
            .await?
            .items
            .is_empty()
    );
    let status = ctx
        .api::<InitialAccessToken>()
        .get("strict")
        .await?
        .status
        .context("status")?;
    ensure!(status.registered_clients.is_empty(), "no slot was spent");
    ensure!(status.remaining == Some(5));
    Ok(())
}

async fn configuration_endpoint(ctx: Ctx) -> anyhow::Result<()> {
    let (controller, a, b) = start(&ctx).await?;
    let iat = initial_access_token(&ctx, "config", 2, "expiresAfter: 1h").await?;
    let body = json!({
        "client_name": "Reporting",
        "grant_types": ["client_credentials"],
        "scope": "invoices.read invoices.write",
    });
    let (code, _, reg) = register(&ctx, &a, Some(&iat), &body).await?;
    ensure!(code == 201, "{reg}");
    let (_, _, other) = register(&ctx, &a, Some(&iat), &m2m("other")).await?;
    let id = reg["client_id"].as_str().context("id")?.to_string();
    let secret = reg["client_secret"].as_str().context("secret")?.to_string();
    let rat = reg["registration_access_token"]
        .as_str()
        .context("rat")?
        .to_string();
    let other_rat = other["registration_access_token"]
        .as_str()
        .context("rat")?
        .to_string();
    let uri = reg["registration_client_uri"]
        .as_str()
        .context("uri")?
        .to_string();
    // The second replica answers the same URI path.
    let uri_b = uri.replace(&a.url, &b.url);

    let get = |token: String, uri: String| {
        let http = ctx.http.clone();
        async move {
            let res = http.get(uri).bearer_auth(token).send().await?;
            let code = res.status().as_u16();
            anyhow::Ok((code, res.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let (code, read) = get(rat.clone(), uri_b.clone()).await?;
    ensure!(code == 200, "{read}");
    ensure!(read["client_id"] == json!(id));
    ensure!(read["client_name"] == json!("Reporting"));
    ensure!(read["scope"] == json!("invoices.read invoices.write"));
    ensure!(
        read.get("client_secret").is_none(),
        "the secret is shown once only"
    );
    for (what, token) in [
        ("wrong", "nope".to_string()),
        ("other client's", other_rat.clone()),
        ("initial access", iat.clone()),
    ] {
        let (code, body) = get(token, uri.clone()).await?;
        ensure!(
            code == 401 && body["error"] == json!("invalid_token"),
            "{what} token: {code} {body}"
        );
    }

    // Update: rename, and narrow the scopes; widening is refused.
    let put = |token: String, body: Value| {
        let (http, uri) = (ctx.http.clone(), uri.clone());
        async move {
            let res = http.put(uri).bearer_auth(token).json(&body).send().await?;
            let code = res.status().as_u16();
            anyhow::Ok((code, res.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let narrowed = json!({
        "client_id": id,
        "client_name": "Reporting v2",
        "grant_types": ["client_credentials"],
        "scope": "invoices.read",
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let (code, updated) = put(rat.clone(), narrowed.clone()).await?;
    ensure!(code == 200, "{updated}");
    ensure!(
        updated["client_name"] == json!("Reporting v2")
            && updated["scope"] == json!("invoices.read")
    );
    let mut widened = narrowed.clone();
    widened["scope"] = json!("invoices.read admin");
    let (code, body) = put(rat.clone(), widened).await?;
    ensure!(
        code == 400 && body["error"] == json!("invalid_client_metadata"),
        "{body}"
    );
    let mut foreign = narrowed.clone();
    foreign["client_id"] = json!("someone-else");
    let (code, _) = put(rat.clone(), foreign).await?;
    ensure!(code == 400);
    let (code, _) = put(other_rat.clone(), narrowed.clone()).await?;
    ensure!(code == 401, "another client's token cannot update");
    let client = ctx.api::<OAuthClient>().get(&id).await?;
    ensure!(client.spec.scopes == vec!["invoices.read".to_string()]);
    ensure!(client.spec.display_name.as_deref() == Some("Reporting v2"));
    eventually(
        Duration::from_secs(10),
        "narrowed scope enforced",
        || async {
            let (code, _, body) = a
                .token(
                    &ctx.http,
                    Some((&id, &secret)),
                    &[
                        ("grant_type", "client_credentials"),
                        ("scope", "invoices.write"),
                    ],
                )
                .await?;
            ensure!(
                code == 400 && body["error"] == json!("invalid_scope"),
                "{body}"
            );
            Ok(())
        },
    )
    .await?;

    // Delete: the wrong token cannot; the right one can, and the client stops working.
    let delete = |token: String| {
        let (http, uri) = (ctx.http.clone(), uri.clone());
        async move {
            anyhow::Ok(
                http.delete(uri)
                    .bearer_auth(token)
                    .send()
                    .await?
                    .status()
                    .as_u16(),
            )
        }
    };
    ensure!(delete(other_rat.clone()).await? == 401);
    ensure!(delete(rat.clone()).await? == 204);
    for server in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "deleted client refused",
            || async {
                let (code, _, body) = server
                    .token(
                        &ctx.http,
                        Some((&id, &secret)),
                        &[("grant_type", "client_credentials")],
                    )
                    .await?;
                ensure!(code == 401, "{body}");
                Ok(())
            },
        )
        .await?;
    }
    let (code, _) = get(rat.clone(), uri.clone()).await?;
    ensure!(code == 401, "a deleted client's registration is gone");
    ensure!(ctx.api::<OAuthClient>().get_opt(&id).await?.is_none());

    assert_nowhere(
        &ctx,
        &[&controller, a.process(), b.process()],
        &[&secret, &rat, &other_rat, &iat],
    )
}

/// The API server accepts the dry run but refuses the real create (an admission policy
/// that only lets dry runs through): the registration fails after its slot was claimed,
/// and the slot must come back, or a transient failure would cost the holder a client.
async fn failed_registration_releases(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, a, _b) = start(&ctx).await?;
    let iat = initial_access_token(&ctx, "single", 1, "expiresAfter: 1h").await?;
    let policy = format!("refuse-oauthclients-{}", ctx.ns);
    let refusal = format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {policy}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [oauth-operator.dev]
      apiVersions: ["*"]
      operations: [CREATE]
      resources: [oauthclients]
  validations:
  - expression: "has(request.dryRun) && request.dryRun"
    message: "this test refuses OAuthClients"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {policy}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {ns}
"#,
        ns = ctx.ns
    );
    ctx.apply(&refusal)?;
    // The API server loads policies asynchronously: wait until a create is refused.
    let probe = "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: probe\nspec: {}\n";
    eventually(Duration::from_secs(30), "the refusal in force", || async {
        let out = ctx.kubectl(&["create", "-f", "-"], Some(probe))?;
        if out.status.success() {
            ctx.kubectl(&["delete", "oauthclient", "probe", "--wait"], None)?;
        }
        ensure!(String::from_utf8_lossy(&out.stderr).contains("this test refuses OAuthClients"));
        Ok(())
    })
    .await?;

    let (code, _, body) = register(&ctx, &a, Some(&iat), &m2m("refused")).await?;
    ensure!(
        code == 500 && body["error"] == json!("server_error"),
        "{code} {body}"
    );
    let tokens = ctx.api::<InitialAccessToken>();
    let status = tokens.get("single").await?.status.context("status")?;
    ensure!(
        status.registered_clients.is_empty(),
        "the slot was not given back: {} registered",
        status.registered_clients.len()
    );
    ensure!(registered_clients(&ctx, "single").await? == 0);
    // `remaining` is also the controller's, which may write it once more from the state it
    // saw while the slot was taken, and then again from the state after.
    eventually(Duration::from_secs(15), "remaining back to 1", || async {
        let status = tokens.get("single").await?.status.context("status")?;
        ensure!(status.remaining == Some(1), "{:?}", status.remaining);
        Ok(())
    })
    .await?;

    // Lifted: the one slot is still there, and still only one.
    ctx.kubectl(
        &[
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            &policy,
        ],
        None,
    )?;
    eventually(
        Duration::from_secs(30),
        "a registration once lifted",
        || async {
            let (code, _, body) = register(&ctx, &a, Some(&iat), &m2m("accepted")).await?;
            ensure!(code == 201, "{code} {body}");
            Ok(())
        },
    )
    .await?;
    let (code, _, body) = register(&ctx, &a, Some(&iat), &m2m("one-too-many")).await?;
    ensure!(
        code == 401 && body["error"] == json!("invalid_token"),
        "{code} {body}"
    );
    ensure!(registered_clients(&ctx, "single").await? == 1);
    Ok(())
}
