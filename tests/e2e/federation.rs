//! Sign-in through an upstream OpenID Connect provider, end to end, with a real provider:
//! a second installation of this project (its own controller and token server, in a
//! namespace of its own, another issuer with its own signing keys) is the upstream. In
//! it, a built-in user and a confidential client registered for the downstream's
//! `/authorize/callback`; in the test's namespace, the downstream stack, an
//! `OAuthUpstream` pointing at the upstream, the client's secret in the upstream
//! Secret, and a public web application.
//!
//! A real headless Chromium opens the downstream's `/authorize`, follows "Sign in with
//! ...", signs in on the upstream's form, comes back through `/authorize/callback` and
//! lands at the application with a code. So each server verifies the other's
//! signatures: the downstream the upstream's ID token against the upstream's `/jwks`,
//! the test the downstream's tokens against the downstream's `/jwks`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams};
use sha2::Digest;

use crate::browser::{Browser, CallbackServer};
use crate::support::{Ctx, Proc, Server, TestFn, eventually, verify_jwt, verify_token};
use oauth_operator::api::{OAuthUpstream, OAuthUser};
use oauth_operator::auth::token::IdTokenClaims;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "federation_sign_in_through_an_upstream_token_server_gets_verified_tokens",
            |c| Box::pin(sign_in(c)),
        ),
        (
            "federation_refuses_an_upstream_sign_in_for_another_client",
            |c| Box::pin(another_client(c)),
        ),
    ]
}

const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "carol-upstream-password-1";

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn parse(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn pkce() -> anyhow::Result<(String, String)> {
    let verifier = format!(
        "{}{}",
        oauth_operator::auth::secret::random_id()?,
        oauth_operator::auth::secret::random_id()?
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    Ok((verifier, challenge))
}

/// Both installations, and what the tests need of them.
struct World {
    /// The upstream's namespace, deleted at the end.
    upstream_ns: String,
    upstream: Server,
    downstream: Server,
    callback: CallbackServer,
    /// The secret of the downstream's `gateway`, for introspection.
    gateway: String,
    _procs: Vec<Proc>,
}

async fn create_namespace(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    crate::support::create_namespace(&ctx.client, name).await
}

/// The generated credentials of client `name` in namespace `ns`, once the controller
/// wrote them.
async fn credentials_in(ctx: &Ctx, ns: &str, name: &str) -> anyhow::Result<(String, String)> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret_name = format!("{name}-credentials");
    eventually(
        Duration::from_secs(60),
        &format!("{ns}/{secret_name}"),
        || async {
            let s = api.get(&secret_name).await?;
            let data = s.data.context("no data")?;
            let get = |k: &str| -> anyhow::Result<String> {
                Ok(String::from_utf8(data.get(k).context("key")?.0.clone())?)
            };
            Ok((get("client_id")?, get("client_secret")?))
        },
    )
    .await
}

/// Both stacks; the upstream's clients `downstream` (registered for the downstream's
/// callback) and `other` (the same redirect URI, another client); the downstream's
/// `OAuthUpstream` `corp` with the client id `client_id_of` picks, and the secret of
/// `downstream` in the upstream Secret.
async fn setup(ctx: &Ctx, client_id_of: &str) -> anyhow::Result<World> {
    let upstream_ns = format!("{}-up", ctx.ns);
    create_namespace(ctx, &upstream_ns).await?;
    let (down_controller, downstream) = ctx.start_stack().await?;
    let (up_controller, upstream) = ctx.start_stack_in(&upstream_ns).await?;
    let callback = CallbackServer::start().await?;

    // The upstream: a user and two confidential clients of the downstream's callback.
    ctx.secret("the upstream user's password", PASSWORD);
    let hash = oauth_operator::auth::hash::hash(PASSWORD)?;
    ctx.secret("the upstream user's password hash", &hash);
    let redirect = format!("{}/authorize/callback", downstream.url);
    ctx.apply_in(
        &upstream_ns,
        &format!(
            r#"apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthUser
metadata: {{name: carol}}
spec:
  displayName: Carol Upstream
  email: carol@corp.example.test
  groups: [billing, ops]
  passwordHash: '{hash}'
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: downstream}}
spec:
  clientId: downstream
  displayName: Downstream Issuer
  grantTypes: [authorization_code]
  redirectUris: ["{redirect}"]
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: other}}
spec:
  clientId: other
  displayName: Another Client
  grantTypes: [authorization_code]
  redirectUris: ["{redirect}"]
"#
        ),
    )?;
    let (id, secret) = credentials_in(ctx, &upstream_ns, "downstream").await?;
    ensure!(id == "downstream", "client id {id}");
    ctx.secret("the upstream client secret", &secret);
    let (_, other_secret) = credentials_in(ctx, &upstream_ns, "other").await?;
    ctx.secret("the other upstream client's secret", &other_secret);

    // The downstream: the provider, its client secret, the applications.
    let client_id = if client_id_of == "downstream" {
        id.clone()
    } else {
        "other".to_string()
    };
    ctx.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: oauth-operator-upstream-secrets}}
stringData:
  corp: "{secret}"
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthUpstream
metadata: {{name: corp}}
spec:
  displayName: Corp IdP
  issuer: "{issuer}"
  clientId: {client_id}
  clientSecretKey: corp
  scopes: [openid, profile, email, groups]
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: billing-web}}
spec:
  clientId: billing-web
  displayName: Billing Web
  type: public
  grantTypes: [authorization_code]
  redirectUris: ["{app}"]
  allowedGroups: [billing]
  accessTokenLifetimeSeconds: 300
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: gateway}}
spec:
  clientId: gateway
"#,
        issuer = upstream.url,
        app = callback.url(),
    ))?;
    ctx.wait_ready("billing-web").await?;
    ctx.wait_ready("gateway").await?;
    let gateway = ctx.credentials("gateway-credentials").await?.1;
    // The upstream serves its client, the downstream shows the provider's button.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (_, challenge) = pkce()?;
    let probe = authorize_url(&downstream, &callback, "probe", &challenge);
    eventually(WAIT, "the downstream offers the upstream provider", || {
        let (http, probe) = (http.clone(), probe.clone());
        async move {
            let page = http.get(&probe).send().await?.text().await?;
            ensure!(page.contains("Sign in with Corp IdP"), "page: {page}");
            Ok(())
        }
    })
    .await?;
    let up_probe = format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
        upstream.url,
        enc(&redirect)
    );
    eventually(WAIT, "the upstream serves the downstream's client", || {
        let (http, probe) = (http.clone(), up_probe.clone());
        async move {
            let res = http.get(&probe).send().await?;
            ensure!(res.status() == 200, "status {}", res.status());
            Ok(())
        }
    })
    .await?;
    Ok(World {
        upstream_ns,
        upstream,
        downstream,
        callback,
        gateway,
        _procs: vec![down_controller, up_controller],
    })
}

fn authorize_url(
    server: &Server,
    callback: &CallbackServer,
    state: &str,
    challenge: &str,
) -> String {
    format!(
        "{}/authorize?response_type=code&client_id=billing-web&redirect_uri={}&scope={}&state={}&nonce=n-fed-1&code_challenge={challenge}&code_challenge_method=S256",
        server.url,
        enc(&callback.url()),
        enc("openid profile email groups"),
        enc(state)
    )
}

/// Opens the downstream's sign-in page, follows "Sign in with Corp IdP" and signs in on
/// the upstream's form.
async fn through_the_upstream(
    browser: &Browser,
    world: &World,
    state: &str,
    challenge: &str,
) -> anyhow::Result<()> {
    browser
        .goto(&authorize_url(
            &world.downstream,
            &world.callback,
            state,
            challenge,
        ))
        .await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("Billing Web asks you to sign in") && text.contains("Sign in with Corp IdP"),
        "downstream sign-in page: {text}"
    );
    browser.click("a.upstream").await?;
    let upstream_form = format!("{}/authorize?", world.upstream.url);
    browser
        .wait_for_url("the upstream's sign-in page", WAIT, |u| {
            u.starts_with(&upstream_form)
        })
        .await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("asks you to sign in"),
        "upstream page: {text}"
    );
    browser.fill("username", "carol").await?;
    browser.fill("password", PASSWORD).await?;
    browser.submit().await
}

async fn cleanup(ctx: &Ctx, world: World) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let _ = api
        .delete(&world.upstream_ns, &DeleteParams::background())
        .await;
}

async fn sign_in(ctx: Ctx) -> anyhow::Result<()> {
    let world = setup(&ctx, "downstream").await?;
    let result = sign_in_steps(&ctx, &world).await;
    cleanup(&ctx, world).await;
    result
}

async fn sign_in_steps(ctx: &Ctx, world: &World) -> anyhow::Result<()> {
    let (down, up) = (&world.downstream, &world.upstream);
    let browser = Browser::start().await?;
    let (verifier, challenge) = pkce()?;
    let steps = through_the_upstream(&browser, world, "fed-state-1", &challenge).await;
    let query = match steps {
        Ok(()) => world.callback.next_query(WAIT).await,
        Err(e) => Err(e),
    };
    let query = match query {
        Ok(q) => q,
        Err(e) => {
            let text = browser.text().await.unwrap_or_default();
            let url = browser.current_url().await.unwrap_or_default();
            let _ = browser.close().await;
            return Err(e.context(format!("the browser is at {url}: {text}")));
        }
    };
    // The upstream leg's cookie is gone once it is spent.
    let cookies = browser.cookies().await?;
    browser.close().await?;
    ensure!(
        !cookies
            .iter()
            .any(|c| c.name().starts_with("oauth_upstream_")),
        "the upstream leg's cookie outlived the sign-in"
    );
    let params = parse(&query);
    let code = params.get("code").context("no code at the callback")?;
    ctx.secret("the downstream authorization code", code);
    ensure!(params.get("state").map(String::as_str) == Some("fed-state-1"));
    ensure!(
        params.get("iss") == Some(&down.url),
        "iss is the downstream: {params:?}"
    );

    let redirect = world.callback.url();
    let (status, _, body) = down
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "billing-web"),
                ("code", code),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
    let access = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id_token = body["id_token"].as_str().unwrap_or_default().to_string();
    ctx.secret("the downstream access token", &access);
    ctx.secret("the downstream ID token", &id_token);
    ensure!(status == 200, "token: {status} {body}");

    // The subject derives from the upstream's issuer and its subject (carol's UID there).
    let carol: OAuthUser = Api::namespaced(ctx.client.clone(), &world.upstream_ns)
        .get("carol")
        .await?;
    let upstream_sub = carol.metadata.uid.context("uid")?;
    let mut h = sha2::Sha256::new();
    h.update(up.url.as_bytes());
    h.update([0]);
    h.update(upstream_sub.as_bytes());
    let expected_sub = format!(
        "upstream:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    );

    let id: IdTokenClaims = verify_jwt(&ctx.http, down, &id_token, "billing-web").await?;
    ensure!(id.sub == expected_sub, "sub {} != {expected_sub}", id.sub);
    ensure!(id.iss == down.url);
    ensure!(id.nonce.as_deref() == Some("n-fed-1"));
    ensure!(id.preferred_username.as_deref() == Some("carol"), "{id:?}");
    ensure!(id.name.as_deref() == Some("Carol Upstream"), "{id:?}");
    ensure!(
        id.email.as_deref() == Some("carol@corp.example.test"),
        "{id:?}"
    );
    ensure!(
        id.groups.as_deref() == Some(&["billing".to_string()][..]),
        "groups filtered by allowedGroups: {:?}",
        id.groups
    );
    let at = verify_token(&ctx.http, down, &access, &down.url).await?;
    ensure!(at.sub == expected_sub);
    ensure!(
        at.roles.contains(&"billing".to_string()) && !at.roles.contains(&"ops".to_string()),
        "roles {:?}",
        at.roles
    );
    let carried = at.upstream.as_ref().context("the upstream claim")?;
    ensure!(carried.upstream == "corp" && carried.username == "carol");

    // Userinfo and introspection answer from the token while the provider is there.
    let info = userinfo(ctx, down, &access).await?;
    ensure!(info.0 == 200, "userinfo {info:?}");
    ensure!(info.1["sub"] == expected_sub.as_str(), "{info:?}");
    ensure!(info.1["email"] == "carol@corp.example.test", "{info:?}");
    ensure!(
        info.1["groups"] == serde_json::json!(["billing"]),
        "{info:?}"
    );
    let seen = introspect(ctx, down, &world.gateway, &access).await?;
    ensure!(seen["active"] == true, "{seen}");
    ensure!(seen["username"] == "carol", "{seen}");

    // Deleting the provider ends its users' tokens.
    ctx.api::<OAuthUpstream>()
        .delete("corp", &DeleteParams::default())
        .await?;
    eventually(WAIT, "the token inactive without its provider", || async {
        let seen = introspect(ctx, down, &world.gateway, &access).await?;
        ensure!(seen["active"] == false, "{seen}");
        Ok(())
    })
    .await?;
    let info = userinfo(ctx, down, &access).await?;
    ensure!(info.0 == 401, "userinfo after the provider went: {info:?}");
    Ok(())
}

async fn introspect(
    ctx: &Ctx,
    server: &Server,
    secret: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(ctx
        .http
        .post(format!("{}/introspect", server.url))
        .basic_auth("gateway", Some(secret))
        .form(&[("token", token)])
        .send()
        .await?
        .json()
        .await?)
}

async fn userinfo(
    ctx: &Ctx,
    server: &Server,
    token: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let res = ctx
        .http
        .get(format!("{}/userinfo", server.url))
        .bearer_auth(token)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or_default()))
}

/// The `OAuthUpstream` names the upstream's client `other`, but the secret is
/// `downstream`'s: the user signs in at the upstream (for `other`), and the downstream's
/// code exchange is refused there. The browser sees an error page and the application
/// gets nothing.
async fn another_client(ctx: Ctx) -> anyhow::Result<()> {
    let world = setup(&ctx, "other").await?;
    let result = another_client_steps(&world).await;
    cleanup(&ctx, world).await;
    result
}

async fn another_client_steps(world: &World) -> anyhow::Result<()> {
    let browser = Browser::start().await?;
    let (_, challenge) = pkce()?;
    let steps = async {
        through_the_upstream(&browser, world, "fed-state-2", &challenge).await?;
        let callback = format!("{}/authorize/callback?", world.downstream.url);
        browser
            .wait_for_url("back at the downstream's callback", WAIT, |u| {
                u.starts_with(&callback)
            })
            .await?;
        let text = browser.text().await?;
        ensure!(
            text.contains("Sign-in failed")
                && text.contains("The identity provider could not sign you in."),
            "error page: {text}"
        );
        ensure!(
            !text.contains("invalid_client") && !text.contains("other"),
            "the page tells nothing of the provider's answer: {text}"
        );
        Ok(())
    }
    .await;
    let _ = browser.close().await;
    steps?;
    ensure!(
        world
            .callback
            .next_query(Duration::from_secs(2))
            .await
            .is_err(),
        "the application got a redirect"
    );
    // Refused where it should be: at the upstream's token endpoint, for the wrong secret.
    let log = world.downstream.process().log_text();
    ensure!(
        log.contains("code_exchange_refused") && log.contains("HTTP 401"),
        "the downstream's log names the refused exchange"
    );
    Ok(())
}
