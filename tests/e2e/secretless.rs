//! Clients without a secret on the real control plane: `private_key_jwt` (RFC 7523) with
//! the public keys in a Secret the team applies, and through dynamic registration with
//! `jwks` in the metadata. The client's key pair is made here, as a workload would.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Secret;
use oauth_operator::api::OAuthClient;
use oauth_operator::auth::keys::{KeySet, StoredKeys};
use serde_json::{Value, json};

use crate::registration::{initial_access_token, register};
use crate::support::{Ctx, Server, TestFn, condition_message, eventually, metric, verify_token};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "a_private_key_jwt_client_gets_tokens_with_its_key_only",
            |c| Box::pin(private_key_jwt(c)),
        ),
        ("a_shared_private_key_is_refused_and_named", |c| {
            Box::pin(private_key_refused(c))
        }),
        ("registration_accepts_private_key_jwt_with_jwks", |c| {
            Box::pin(registered_with_keys(c))
        }),
        (
            "a_service_account_token_authenticates_only_its_own_client",
            |c| Box::pin(service_account_client(c)),
        ),
        (
            "a_private_key_jwt_client_reads_its_keys_at_its_jwks_uri",
            |c| Box::pin(keys_at_a_uri(c)),
        ),
        (
            "another_clusters_service_account_authenticates_through_a_trusted_issuer",
            |c| Box::pin(federated_client(c)),
        ),
    ]
}

const API: &str = "https://api.example.test";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's key pair: the public JWK Set it publishes, the private key it signs with.
fn key_pair() -> anyhow::Result<KeySet> {
    Ok(KeySet::load(&StoredKeys::generate_es256()?)?)
}

fn public_jwks(keys: &KeySet) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&keys.jwks)?)
}

/// An assertion of `client_id` for `server`'s token endpoint, signed by `keys`, with
/// `changes` applied to the claims (null removes one).
fn assertion(
    keys: &KeySet,
    client_id: &str,
    server: &Server,
    changes: Value,
) -> anyhow::Result<String> {
    let now = jiff::Timestamp::now().as_second();
    let mut claims = json!({
        "iss": client_id, "sub": client_id, "aud": format!("{}/token", server.url),
        "exp": now + 60, "iat": now, "jti": oauth_operator::auth::secret::random_id()?,
    });
    for (k, v) in changes.as_object().context("changes")? {
        if v.is_null() {
            claims.as_object_mut().context("claims")?.remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    let signer = keys.signer(now);
    let mut header = jsonwebtoken::Header::new(signer.alg);
    header.kid = Some(signer.kid.clone());
    Ok(jsonwebtoken::encode(&header, &claims, &signer.key)?)
}

async fn by_assertion(ctx: &Ctx, server: &Server, jwt: &str) -> anyhow::Result<(u16, Value)> {
    let (code, _, body) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", jwt),
            ],
        )
        .await?;
    Ok((code, body))
}

/// A secretless client's credentials Secret: its id and the token endpoint, nothing to
/// authenticate with.
async fn secret_holds_no_secret(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let credentials: Secret = ctx.api::<Secret>().get(name).await?;
    let mut written: Vec<String> = credentials.data.unwrap_or_default().into_keys().collect();
    written.sort();
    ensure!(
        written == ["client_id", "token_endpoint"],
        "{name} holds {written:?}"
    );
    Ok(())
}

fn keyed_client(name: &str, keys_secret: &str) -> String {
    format!(
        r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: {name}
spec:
  clientId: {name}
  scopes: [invoices.read]
  audiences: [{API}]
  authentication:
    privateKeyJwt:
      jwksSecretRef: {{name: {keys_secret}, key: jwks.json}}
"#
    )
}

fn jwks_secret(name: &str, jwks: &str) -> anyhow::Result<String> {
    Ok(format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  jwks.json: {}\n",
        serde_json::to_string(jwks)?
    ))
}

async fn private_key_jwt(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    let keys = key_pair()?;
    ctx.apply(&jwks_secret("billing-jwks", &public_jwks(&keys)?)?)?;
    ctx.apply(&keyed_client("billing", "billing-jwks"))?;
    let client = ctx.wait_ready("billing").await?;
    let status = client.status.context("status")?;
    ensure!(
        status.authentication_methods == ["private_key_jwt"],
        "methods: {:?}",
        status.authentication_methods
    );
    // No secret was generated: the credentials Secret holds the id and the endpoint only.
    secret_holds_no_secret(&ctx, "billing-credentials").await?;
    let (code, _, body) = server
        .token(
            &ctx.http,
            Some(("billing", "guess")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    ensure!(
        code == 401 && body["error"] == "invalid_client",
        "a secret is refused: {code} {body}"
    );

    // The token, once the index has the keys.
    let jwt = eventually(Duration::from_secs(20), "an assertion accepted", || async {
        let jwt = assertion(&keys, "billing", &server, json!({}))?;
        let (code, body) = by_assertion(&ctx, &server, &jwt).await?;
        ensure!(code == 200, "{code} {body}");
        let token = body["access_token"]
            .as_str()
            .context("access_token")?
            .to_string();
        Ok((jwt, token))
    })
    .await?;
    let claims = verify_token(&ctx.http, &server, &jwt.1, API).await?;
    ensure!(claims.sub == "billing");
    ensure!(claims.client_auth_method.as_deref() == Some("private_key_jwt"));

    // Each refusal is the same invalid_client; the metrics say which check failed.
    let other = key_pair()?;
    let now = jiff::Timestamp::now().as_second();
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = json!({"iss": "billing", "sub": "billing", "aud": format!("{}/token", server.url), "exp": now + 60, "jti": "x"});
    let unsigned = format!("{}.{}.", b64(json!({"alg": "none"})), b64(claims.clone()));
    let hmac = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public_jwks(&keys)?.as_bytes()),
    )?;
    let cases = [
        ("replayed", jwt.0.clone(), "assertion_replayed"),
        (
            "expired",
            assertion(&keys, "billing", &server, json!({"exp": now - 120}))?,
            "assertion_expired",
        ),
        (
            "wrong aud",
            assertion(
                &keys,
                "billing",
                &server,
                json!({"aud": "https://elsewhere.test/token"}),
            )?,
            "assertion_audience",
        ),
        (
            "another key",
            assertion(&other, "billing", &server, json!({}))?,
            "assertion_unknown_key",
        ),
        ("alg none", unsigned, "assertion_algorithm"),
        ("HMAC", hmac, "assertion_algorithm"),
    ];
    for (what, jwt, _) in &cases {
        let (code, body) = by_assertion(&ctx, &server, jwt).await?;
        ensure!(
            code == 401 && body == json!({"error": "invalid_client"}),
            "{what}: {code} {body}"
        );
    }
    let text = server.metrics(&ctx.http).await?;
    for (what, _, reason) in &cases {
        let m = metric(
            &text,
            &format!("oauth_operator_client_assertion_refusals_total{{reason=\"{reason}\"}}"),
        );
        ensure!(m >= 1.0, "{what}: no refusal counted as {reason}");
    }
    let log = server.process().log_text();
    ensure!(
        log.contains("assertion_replayed"),
        "the audit log names the check"
    );
    ensure!(!log.contains(&jwt.0), "an assertion appears in the log");
    ensure!(!log.contains(&jwt.1), "a token appears in the log");

    // Deleting the keys' Secret ends the method (after the controller's next read).
    ctx.api::<Secret>()
        .delete("billing-jwks", &Default::default())
        .await?;
    eventually(
        Duration::from_secs(60),
        "the client waits for its keys",
        || async {
            let c: OAuthClient = ctx.api().get("billing").await?;
            let msg = condition_message(&c, "Ready");
            ensure!(msg.contains("billing-jwks"), "Ready: {msg}");
            Ok(())
        },
    )
    .await?;
    eventually(Duration::from_secs(20), "assertions refused", || async {
        let (code, body) = by_assertion(
            &ctx,
            &server,
            &assertion(&keys, "billing", &server, json!({}))?,
        )
        .await?;
        ensure!(code == 401, "{code} {body}");
        Ok(())
    })
    .await
}

async fn private_key_refused(ctx: Ctx) -> anyhow::Result<()> {
    let _controller = ctx.start_controller("http://127.0.0.1:1")?;
    let keys = key_pair()?;
    let mut leaked: Value = serde_json::from_str(&public_jwks(&keys)?)?;
    let private_value = "c2hhcmVkLXByaXZhdGUta2V5";
    leaked["keys"][0]["d"] = json!(private_value);
    ctx.secret("a private JWK member", private_value);
    ctx.apply(&jwks_secret("leaky-jwks", &leaked.to_string())?)?;
    ctx.apply(&keyed_client("leaky", "leaky-jwks"))?;
    let client = eventually(Duration::from_secs(30), "the keys refused", || async {
        let c: OAuthClient = ctx.api().get("leaky").await?;
        let msg = condition_message(&c, "SpecValid");
        ensure!(msg.contains("private key material"), "SpecValid: {msg}");
        Ok(c)
    })
    .await?;
    let ready = condition_message(&client, "Ready");
    ensure!(ready.contains("no usable key"), "Ready: {ready}");
    let verifier: oauth_operator::api::OAuthClientVerifier = ctx.api().get("leaky").await?;
    ensure!(
        verifier.spec.jwks.is_none(),
        "the keys reached the verifier"
    );
    let out = ctx.kubectl(
        &[
            "get",
            "oauthclients,oauthclientverifiers,events",
            "-o",
            "yaml",
        ],
        None,
    )?;
    ensure!(
        !String::from_utf8_lossy(&out.stdout).contains(private_value),
        "the private member appears in a resource or an Event"
    );
    Ok(())
}

async fn registered_with_keys(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    let iat = initial_access_token(&ctx, "keyed", 2, "expiresAfter: 1h").await?;
    let keys = key_pair()?;
    let jwks: Value = serde_json::from_str(&public_jwks(&keys)?)?;
    let (code, _, body) = register(
        &ctx,
        &server,
        Some(&iat),
        &json!({
            "client_name": "Keyed exporter",
            "grant_types": ["client_credentials"],
            "scope": "invoices.read",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
        }),
    )
    .await?;
    ensure!(code == 201, "{code} {body}");
    ensure!(
        body.get("client_secret").is_none(),
        "a secret was issued: {body}"
    );
    ensure!(
        body["token_endpoint_auth_method"] == "private_key_jwt",
        "{body}"
    );
    ensure!(body["jwks"] == jwks, "the keys are echoed: {body}");
    let id = body["client_id"].as_str().context("client_id")?.to_string();

    let (code, body) =
        by_assertion(&ctx, &server, &assertion(&keys, &id, &server, json!({}))?).await?;
    ensure!(
        code == 200,
        "the registered client's assertion: {code} {body}"
    );
    let token = body["access_token"].as_str().context("access_token")?;
    let claims = verify_token(&ctx.http, &server, token, API).await?;
    ensure!(
        claims.client_id == id && claims.client_auth_method.as_deref() == Some("private_key_jwt")
    );

    // A symmetric key, or keys without the method, are refused and nothing is created.
    for (what, meta) in [
        (
            "an oct key",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        ),
        (
            "no keys",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
        ),
    ] {
        let (code, _, body) = register(&ctx, &server, Some(&iat), &meta).await?;
        ensure!(
            code == 400 && body["error"] == "invalid_client_metadata",
            "{what}: {code} {body}"
        );
    }
    let clients = ctx.api::<OAuthClient>().list(&Default::default()).await?;
    ensure!(
        clients.items.len() == 1,
        "refused registrations created clients"
    );
    Ok(())
}

/// A token of `service_account` from the API server's TokenRequest API, for `audience`:
/// what `kubectl create token` and a projected volume get.
fn service_account_token(
    ctx: &Ctx,
    service_account: &str,
    audience: &str,
) -> anyhow::Result<String> {
    let out = ctx.kubectl(
        &[
            "create",
            "token",
            service_account,
            "--audience",
            audience,
            "--duration=10m",
        ],
        None,
    )?;
    ensure!(
        out.status.success(),
        "create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    ctx.secret("a ServiceAccount token", &token);
    Ok(token)
}

async fn with_client_id(
    ctx: &Ctx,
    server: &Server,
    client_id: &str,
    jwt: &str,
) -> anyhow::Result<(u16, Value)> {
    let (code, _, body) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", jwt),
            ],
        )
        .await?;
    Ok((code, body))
}

/// ServiceAccount tokens minted by the real API server: accepted for the client's own
/// ServiceAccount (with or without client_id), refused for another ServiceAccount, another
/// audience, a forged signature, and a ServiceAccount deleted and re-created.
async fn service_account_client(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    ctx.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: billing}\n")?;
    ctx.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: other}\n")?;
    ctx.apply(&format!(
        r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: billing
spec:
  clientId: billing
  scopes: [invoices.read]
  audiences: [{API}]
  authentication:
    serviceAccounts: [{{name: billing}}]
"#
    ))?;
    let client = ctx.wait_ready("billing").await?;
    let found = condition_message(&client, "ServiceAccountsFound");
    ensure!(found.contains("exists"), "ServiceAccountsFound: {found}");
    let status = client.status.context("status")?;
    ensure!(
        status.authentication_methods == ["kubernetes_service_account"],
        "methods: {:?}",
        status.authentication_methods
    );
    secret_holds_no_secret(&ctx, "billing-credentials").await?;

    let issuer = server.url.as_str();
    let token = service_account_token(&ctx, "billing", issuer)?;
    let access = eventually(
        Duration::from_secs(20),
        "a ServiceAccount token accepted",
        || async {
            let (code, body) = with_client_id(&ctx, &server, "billing", &token).await?;
            ensure!(code == 200, "{code} {body}");
            Ok(body["access_token"]
                .as_str()
                .context("access_token")?
                .to_string())
        },
    )
    .await?;
    let claims = verify_token(&ctx.http, &server, &access, API).await?;
    ensure!(claims.sub == "billing");
    ensure!(claims.client_auth_method.as_deref() == Some("kubernetes_service_account"));
    // Presented again, and without client_id (the one client of this ServiceAccount).
    let (code, body) = by_assertion(&ctx, &server, &token).await?;
    ensure!(code == 200, "without client_id: {code} {body}");

    // Forged: the same claims and kid, signed by a key the cluster never had.
    let header = jsonwebtoken::decode_header(&token)?;
    let payload = oauth_operator::auth::jws::unverified_claims(&token).context("claims")?;
    let forger = key_pair()?;
    let signer = forger.signer(jiff::Timestamp::now().as_second());
    let mut forged_header = jsonwebtoken::Header::new(signer.alg);
    forged_header.kid = header.kid.clone();
    let forged = jsonwebtoken::encode(&forged_header, &payload, &signer.key)?;

    let cases = [
        (
            "another ServiceAccount",
            service_account_token(&ctx, "other", issuer)?,
            "assertion_not_accepted",
        ),
        (
            "another audience",
            service_account_token(&ctx, "billing", "https://elsewhere.test")?,
            "assertion_audience",
        ),
        ("forged", forged, "assertion_algorithm"),
    ];
    for (what, jwt, _) in &cases {
        let (code, body) = with_client_id(&ctx, &server, "billing", jwt).await?;
        ensure!(
            code == 401 && body == json!({"error": "invalid_client"}),
            "{what}: {code} {body}"
        );
    }

    // Deleted and re-created under the same name: the old token names the old UID.
    let out = ctx.kubectl(&["delete", "serviceaccount", "billing"], None)?;
    ensure!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ctx.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: billing}\n")?;
    eventually(Duration::from_secs(20), "the old token refused", || async {
        let (code, body) = with_client_id(&ctx, &server, "billing", &token).await?;
        ensure!(
            code == 401 && body == json!({"error": "invalid_client"}),
            "{code} {body}"
        );
        Ok(())
    })
    .await?;
    let renewed = service_account_token(&ctx, "billing", issuer)?;
    eventually(
        Duration::from_secs(20),
        "the new ServiceAccount's token accepted",
        || async {
            let (code, body) = with_client_id(&ctx, &server, "billing", &renewed).await?;
            ensure!(code == 200, "{code} {body}");
            Ok(())
        },
    )
    .await?;

    // A ServiceAccount that does not exist is named in the status, and the client is not
    // Ready when it is its only way in.
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: ghost}\nspec:\n  authentication:\n    serviceAccounts: [{name: nobody}]\n",
    )?;
    let ghost = ctx
        .wait_condition(
            "ghost",
            "ServiceAccountsFound",
            "False",
            Some("ServiceAccountNotFound"),
        )
        .await?;
    let message = condition_message(&ghost, "ServiceAccountsFound");
    ensure!(message.contains(&format!("{}/nobody", ctx.ns)), "{message}");
    ensure!(condition_message(&ghost, "Ready").contains("no existing ServiceAccount"));

    let text = server.metrics(&ctx.http).await?;
    for reason in [
        "assertion_not_accepted",
        "assertion_audience",
        "assertion_service_account_gone",
    ] {
        let name = format!("oauth_operator_client_assertion_refusals_total{{reason=\"{reason}\"}}");
        ensure!(metric(&text, &name) >= 1.0, "{name}: {text}");
    }
    // The forged token's refusal: by its signature, or by an algorithm its key does not have.
    let forged_refused = ["assertion_signature", "assertion_algorithm"]
        .iter()
        .any(|r| {
            let name = format!("oauth_operator_client_assertion_refusals_total{{reason=\"{r}\"}}");
            metric(&text, &name) >= 1.0
        });
    ensure!(forged_refused, "the forged token's refusal: {text}");
    Ok(())
}

/// `kubectl` against another control plane, in namespace `ns`.
fn kubectl_at(
    cp: &envtest::ControlPlane,
    ns: &str,
    args: &[&str],
) -> anyhow::Result<std::process::Output> {
    let out = std::process::Command::new(cp.kubectl())
        .arg(format!("--kubeconfig={}", cp.kubeconfig().display()))
        .arg(format!("--namespace={ns}"))
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Federation with a second, real control plane whose ServiceAccount issuer publishes its
/// discovery document and keys at its own URL (anonymous readers allowed, as a cluster
/// another one trusts must): the operator trusts that issuer by flag, a client lists the
/// other cluster's ServiceAccount, and that account's TokenRequest token gets tokens here,
/// with and without client_id. Refused: another of its ServiceAccounts, another audience,
/// and this cluster's ServiceAccount of the very same namespace and name (same `sub`,
/// another issuer). A client naming an issuer the operator does not trust says so.
async fn federated_client(ctx: Ctx) -> anyhow::Result<()> {
    let other = envtest::ControlPlane::start(envtest::Options {
        dir: None,
        crds: Vec::new(),
        issuer_at_own_url: true,
    })
    .await?;
    let issuer = other.server().to_string();
    kubectl_at(
        &other,
        "default",
        &[
            "create",
            "clusterrolebinding",
            "anonymous-issuer-discovery",
            "--clusterrole=system:service-account-issuer-discovery",
            "--group=system:unauthenticated",
        ],
    )?;
    // The same namespace name as this test's, so the two clusters' accounts share `sub`.
    kubectl_at(&other, "default", &["create", "namespace", &ctx.ns])?;
    for sa in ["billing", "other"] {
        kubectl_at(&other, &ctx.ns, &["create", "serviceaccount", sa])?;
    }
    ctx.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: billing}\n")?;

    let trust = format!("--federated-issuer={issuer}");
    let ca = format!("--extra-ca-file={}", other.ca_file().display());
    let port = envtest::free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let _controller = ctx.start_controller_with(&url, &[&trust])?;
    let server = ctx.start_server_with(port, &[&trust, &ca]).await?;

    let sub = format!("system:serviceaccount:{}:billing", ctx.ns);
    ctx.apply(&format!(
        r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: billing
spec:
  clientId: billing
  scopes: [invoices.read]
  audiences: [{API}]
  authentication:
    federated: [{{issuer: "{issuer}", subject: "{sub}"}}]
"#
    ))?;
    let client = ctx.wait_ready("billing").await?;
    let trusted = condition_message(&client, "FederatedIssuersTrusted");
    ensure!(trusted.contains("trusts every issuer"), "{trusted}");
    let status = client.status.context("status")?;
    ensure!(
        status.authentication_methods == ["federated_identity"],
        "methods: {:?}",
        status.authentication_methods
    );
    secret_holds_no_secret(&ctx, "billing-credentials").await?;

    let token_of = |sa: &str, audience: &str| -> anyhow::Result<String> {
        let out = kubectl_at(
            &other,
            &ctx.ns,
            &[
                "create",
                "token",
                sa,
                "--audience",
                audience,
                "--duration=10m",
            ],
        )?;
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        ctx.secret("another cluster's ServiceAccount token", &token);
        Ok(token)
    };
    let token = token_of("billing", &server.url)?;
    let (code, body) = with_client_id(&ctx, &server, "billing", &token).await?;
    ensure!(code == 200, "{code} {body}");
    let access = body["access_token"].as_str().context("access_token")?;
    let claims = verify_token(&ctx.http, &server, access, API).await?;
    ensure!(claims.sub == "billing");
    ensure!(claims.client_auth_method.as_deref() == Some("federated_identity"));
    let (code, body) = by_assertion(&ctx, &server, &token).await?;
    ensure!(code == 200, "without client_id: {code} {body}");

    let cases = [
        ("another ServiceAccount", token_of("other", &server.url)?),
        (
            "another audience",
            token_of("billing", "https://elsewhere.test")?,
        ),
        (
            "this cluster's account of the same name",
            service_account_token(&ctx, "billing", &server.url)?,
        ),
    ];
    for (what, jwt) in &cases {
        let (code, body) = with_client_id(&ctx, &server, "billing", jwt).await?;
        ensure!(
            code == 401 && body == json!({"error": "invalid_client"}),
            "{what}: {code} {body}"
        );
    }
    let text = server.metrics(&ctx.http).await?;
    for (reason, at_least) in [("assertion_not_accepted", 2.0), ("assertion_audience", 1.0)] {
        let name = format!("oauth_operator_client_assertion_refusals_total{{reason=\"{reason}\"}}");
        ensure!(metric(&text, &name) >= at_least, "{name}: {text}");
    }

    // An issuer the operator does not trust: named in the status, not Ready.
    ctx.apply(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: ci}\nspec:\n  authentication:\n    federated: [{issuer: \"https://ci.untrusted.test\", subject: deploy}]\n",
    )?;
    let ci = ctx
        .wait_condition(
            "ci",
            "FederatedIssuersTrusted",
            "False",
            Some("IssuerNotTrusted"),
        )
        .await?;
    let message = condition_message(&ci, "FederatedIssuersTrusted");
    ensure!(message.contains("https://ci.untrusted.test"), "{message}");
    ensure!(condition_message(&ci, "Ready").contains("trusted issuer"));
    Ok(())
}

/// A loopback server publishing one JWK Set at `/jwks.json`, as a client team would.
async fn publish_jwks(jwks: String) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let port = envtest::free_port()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    jwks,
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://127.0.0.1:{port}/jwks.json"), task))
}

/// Keys the client publishes at a URL (`jwksUri`, and `jwks_uri` through registration):
/// the controller reads them into the verifier, and assertions signed with them get
/// tokens. A URL that cannot be read is named in the KeysFetched condition.
async fn keys_at_a_uri(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    let keys = key_pair()?;
    let (uri, publisher) = publish_jwks(public_jwks(&keys)?).await?;
    ctx.apply(&format!(
        r#"
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata:
  name: billing
spec:
  clientId: billing
  scopes: [invoices.read]
  audiences: [{API}]
  authentication:
    privateKeyJwt: {{jwksUri: "{uri}"}}
"#
    ))?;
    let client = ctx.wait_ready("billing").await?;
    let fetched = condition_message(&client, "KeysFetched");
    ensure!(fetched.contains("was read"), "KeysFetched: {fetched}");
    secret_holds_no_secret(&ctx, "billing-credentials").await?;
    let token = eventually(Duration::from_secs(20), "an assertion accepted", || async {
        let jwt = assertion(&keys, "billing", &server, json!({}))?;
        let (code, body) = by_assertion(&ctx, &server, &jwt).await?;
        ensure!(code == 200, "{code} {body}");
        Ok(body["access_token"]
            .as_str()
            .context("access_token")?
            .to_string())
    })
    .await?;
    let claims = verify_token(&ctx.http, &server, &token, API).await?;
    ensure!(claims.client_auth_method.as_deref() == Some("private_key_jwt"));
    // Another key is still refused.
    let jwt = assertion(&key_pair()?, "billing", &server, json!({}))?;
    let (code, body) = by_assertion(&ctx, &server, &jwt).await?;
    ensure!(code == 401, "another key: {code} {body}");

    // Registered with jwks_uri: echoed, and its assertions get tokens.
    let iat = initial_access_token(&ctx, "by-uri", 1, "expiresAfter: 1h").await?;
    let (code, _, body) = register(
        &ctx,
        &server,
        Some(&iat),
        &json!({
            "grant_types": ["client_credentials"],
            "scope": "invoices.read",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": uri,
        }),
    )
    .await?;
    ensure!(code == 201, "{code} {body}");
    ensure!(body["jwks_uri"] == json!(uri), "jwks_uri echoed: {body}");
    ensure!(body.get("client_secret").is_none(), "a secret: {body}");
    let id = body["client_id"].as_str().context("client_id")?.to_string();
    eventually(
        Duration::from_secs(20),
        "the registered client's assertion accepted",
        || async {
            let jwt = assertion(&keys, &id, &server, json!({}))?;
            let (code, body) = by_assertion(&ctx, &server, &jwt).await?;
            ensure!(code == 200, "{code} {body}");
            Ok(())
        },
    )
    .await?;

    // Nobody listens at this URL: named, and nothing accepted.
    let closed = format!("http://127.0.0.1:{}/jwks.json", envtest::free_port()?);
    ctx.apply(&format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: unread}}\nspec:\n  authentication:\n    privateKeyJwt: {{jwksUri: \"{closed}\"}}\n"
    ))?;
    let unread = ctx
        .wait_condition("unread", "KeysFetched", "False", Some("FetchFailed"))
        .await?;
    let message = condition_message(&unread, "KeysFetched");
    ensure!(
        message.contains("could not be reached") && message.contains(&closed),
        "{message}"
    );
    ensure!(condition_message(&unread, "Ready").contains("no key is accepted"));
    publisher.abort();
    Ok(())
}
