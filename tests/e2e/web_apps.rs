//! Web applications end to end: a real headless Chromium signs a built-in user in at
//! `/authorize`, a real callback server (the application) receives the code, and the
//! code is exchanged at `/token`, on the real control plane. Tokens are verified against
//! `/jwks`; a second use of a code, a wrong password, a lockout, an unregistered redirect
//! URI, a wrong PKCE verifier, a tampered form, a deactivated client and a disabled user
//! are each refused as a browser, an application and a resource server see it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use base64::Engine;
use sha2::Digest;

use crate::browser::{Browser, CallbackServer};
use crate::support::{Ctx, Server, TestFn, eventually, verify_jwt, verify_token};
use oauth_operator::auth::token::IdTokenClaims;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "browser_sign_in_gets_verified_tokens_and_a_code_works_once",
            |c| Box::pin(sign_in(c)),
        ),
        (
            "browser_sign_in_refuses_wrong_passwords_bad_redirects_and_tampering",
            |c| Box::pin(refusals(c)),
        ),
        (
            "deactivating_the_client_or_disabling_the_user_ends_its_tokens",
            |c| Box::pin(mid_session(c)),
        ),
    ]
}

const WAIT: Duration = Duration::from_secs(30);

/// A built-in user with `password`, in the operator namespace.
fn user_yaml(ctx: &Ctx, name: &str, password: &str, groups: &[&str]) -> anyhow::Result<String> {
    ctx.secret(&format!("password of {name}"), password);
    let hash = oauth_operator::auth::hash::hash(password)?;
    Ok(format!(
        r#"apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthUser
metadata: {{name: {name}, namespace: {ns}}}
spec:
  displayName: {name} Example
  email: {name}@example.test
  groups: [{groups}]
  passwordHash: '{hash}'
"#,
        ns = ctx.ns,
        groups = groups.join(", ")
    ))
}

/// A public web application allowed the authorization code grant, seeing only the
/// `billing` group.
fn app_yaml(ctx: &Ctx, redirect_uri: &str) -> String {
    format!(
        r#"apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: billing-web, namespace: {ns}}}
spec:
  clientId: billing-web
  displayName: Billing Web
  type: public
  grantTypes: [authorization_code]
  redirectUris: ["{redirect_uri}"]
  scopes: [invoices.read]
  allowedGroups: [billing]
  accessTokenLifetimeSeconds: 300
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: gateway, namespace: {ns}}}
spec:
  clientId: gateway
"#,
        ns = ctx.ns
    )
}

/// A PKCE verifier and its S256 challenge.
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

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authorize_url(server: &Server, redirect_uri: &str, state: &str, challenge: &str) -> String {
    format!(
        "{}/authorize?response_type=code&client_id=billing-web&redirect_uri={}&scope={}&state={}&nonce=n-0S6_WzA2Mj&code_challenge={challenge}&code_challenge_method=S256",
        server.url,
        enc(redirect_uri),
        enc("openid profile email groups invoices.read"),
        enc(state)
    )
}

fn parse(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Starts the stack with `server_args`, the users and the applications, and waits until
/// the server serves the application.
async fn setup(
    ctx: &Ctx,
    server_args: &[&str],
    users: &[(&str, &str, &[&str])],
) -> anyhow::Result<(crate::support::Proc, Server, CallbackServer, String)> {
    let (controller, server) = ctx.start_stack_with(server_args).await?;
    let callback = CallbackServer::start().await?;
    for (name, password, groups) in users {
        ctx.apply(&user_yaml(ctx, name, password, groups)?)?;
    }
    ctx.apply(&app_yaml(ctx, &callback.url()))?;
    ctx.wait_ready("billing-web").await?;
    ctx.wait_ready("gateway").await?;
    let secret = ctx.credentials("gateway-credentials").await?.1;
    // The server learns clients and users from its watches; the users were applied first
    // and need no controller, so they are there once the client is.
    let (_, challenge) = pkce()?;
    let probe = authorize_url(&server, &callback.url(), "probe", &challenge);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    eventually(WAIT, "the server shows the sign-in form", || {
        let (http, probe) = (http.clone(), probe.clone());
        async move {
            let res = http.get(&probe).send().await?;
            ensure!(res.status() == 200, "status {}", res.status());
            Ok(())
        }
    })
    .await?;
    Ok((controller, server, callback, secret))
}

/// Signs `user` in through the browser and returns the callback's parameters.
async fn browser_sign_in(
    browser: &Browser,
    server: &Server,
    callback: &CallbackServer,
    user: &str,
    password: &str,
    state: &str,
    challenge: &str,
) -> anyhow::Result<HashMap<String, String>> {
    browser
        .goto(&authorize_url(server, &callback.url(), state, challenge))
        .await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("Billing Web asks you to sign in"),
        "sign-in page: {text}"
    );
    browser.fill("username", user).await?;
    browser.fill("password", password).await?;
    browser.submit().await?;
    Ok(parse(&callback.next_query(WAIT).await?))
}

async fn exchange(
    ctx: &Ctx,
    server: &Server,
    callback: &CallbackServer,
    code: &str,
    verifier: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let redirect = callback.url();
    let (status, _, body) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "billing-web"),
                ("code", code),
                ("redirect_uri", &redirect),
                ("code_verifier", verifier),
            ],
        )
        .await?;
    if let Some(t) = body["access_token"].as_str() {
        ctx.secret("access token", t);
    }
    if let Some(t) = body["id_token"].as_str() {
        ctx.secret("ID token", t);
    }
    Ok((status, body))
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

async fn sign_in(ctx: Ctx) -> anyhow::Result<()> {
    let (_c, server, callback, gateway) = setup(
        &ctx,
        &[],
        &[("alice", "alice-password-1", &["billing", "ops"])],
    )
    .await?;
    let browser = Browser::start().await?;
    let (verifier, challenge) = pkce()?;
    // A state with characters that need encoding comes back byte for byte.
    let state = "st/1 & é=?";
    let params = browser_sign_in(
        &browser,
        &server,
        &callback,
        "alice",
        "alice-password-1",
        state,
        &challenge,
    )
    .await?;
    browser.close().await?;
    let code = params.get("code").context("no code")?;
    ctx.secret("authorization code", code);
    ensure!(
        params.get("state").map(String::as_str) == Some(state),
        "state: {params:?}"
    );
    ensure!(
        params.get("iss") == Some(&server.url),
        "iss (RFC 9207): {params:?}"
    );

    let (status, body) = exchange(&ctx, &server, &callback, code, &verifier).await?;
    ensure!(status == 200, "exchange: {status} {body}");
    let access = body["access_token"].as_str().context("access_token")?;
    let id_token = body["id_token"].as_str().context("id_token")?;
    let claims = verify_token(&ctx.http, &server, access, &server.url).await?;
    let alice: oauth_operator::api::OAuthUser = ctx.api().get("alice").await?;
    ensure!(
        Some(&claims.sub) == alice.metadata.uid.as_ref(),
        "sub is the user's UID"
    );
    ensure!(claims.client_id == "billing-web", "client_id");
    ensure!(
        claims.roles == ["member", "billing"],
        "roles: the default, then the visible groups: {:?}",
        claims.roles
    );
    ensure!(
        claims.grant_id.is_some() && claims.auth_time.is_some(),
        "grant and auth_time"
    );
    let id: IdTokenClaims = verify_jwt(&ctx.http, &server, id_token, "billing-web").await?;
    ensure!(id.nonce.as_deref() == Some("n-0S6_WzA2Mj"), "nonce");
    ensure!(id.azp == "billing-web" && id.sub == claims.sub, "azp, sub");
    ensure!(
        id.preferred_username.as_deref() == Some("alice"),
        "preferred_username"
    );
    ensure!(id.email.as_deref() == Some("alice@example.test"), "email");
    ensure!(
        id.groups == Some(vec!["billing".to_string()]),
        "groups filtered by allowedGroups: {:?}",
        id.groups
    );

    let (status, info) = userinfo(&ctx, &server, access).await?;
    ensure!(
        status == 200 && info["sub"] == claims.sub.as_str(),
        "userinfo: {status} {info}"
    );
    ensure!(
        info["groups"] == serde_json::json!(["billing"]),
        "userinfo groups: {info}"
    );
    let active = introspect(&ctx, &server, &gateway, access).await?;
    ensure!(
        active["active"] == true && active["username"] == "alice",
        "introspection: {active}"
    );

    // The code is single use: a second exchange fails, and ends what the first one got.
    let (status, again) = exchange(&ctx, &server, &callback, code, &verifier).await?;
    ensure!(
        status == 400 && again["error"] == "invalid_grant",
        "second use: {status} {again}"
    );
    eventually(WAIT, "the first exchange's token is revoked", || async {
        let v = introspect(&ctx, &server, &gateway, access).await?;
        ensure!(v["active"] == false, "{v}");
        Ok(())
    })
    .await?;
    let (status, _) = userinfo(&ctx, &server, access).await?;
    ensure!(status == 401, "userinfo after the reuse: {status}");
    let grants: Vec<oauth_operator::api::OAuthGrant> =
        ctx.api().list(&Default::default()).await?.items;
    ensure!(
        grants.len() == 1 && grants[0].spec.username == "alice",
        "one grant, alice's"
    );
    Ok(())
}

async fn refusals(ctx: Ctx) -> anyhow::Result<()> {
    let (_c, server, callback, _) = setup(
        &ctx,
        &["--lockout-failures=3"],
        &[
            ("carol", "carol-password-1", &["billing"]),
            ("dave", "dave-password-1", &[]),
        ],
    )
    .await?;
    let browser = Browser::start().await?;

    // A redirect URI the client did not register: an error page, and no redirect.
    let (_, challenge) = pkce()?;
    let evil = authorize_url(&server, "http://127.0.0.1:9/elsewhere", "s", &challenge);
    browser.goto(&evil).await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("Sign-in failed") && text.contains("not registered"),
        "error page: {text}"
    );
    ensure!(
        browser.current_url().await?.starts_with(&server.url),
        "the browser stays on the server"
    );

    // Wrong passwords stay on the form; after three the right one is refused too.
    browser
        .goto(&authorize_url(&server, &callback.url(), "s", &challenge))
        .await?;
    for _ in 0..3 {
        browser.fill("username", "carol").await?;
        browser.fill("password", "not-her-password").await?;
        browser.submit().await?;
        let text = browser.text().await?;
        ensure!(
            text.contains("Incorrect username or password."),
            "wrong password: {text}"
        );
    }
    browser.fill("password", "carol-password-1").await?;
    browser.submit().await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("Incorrect username or password."),
        "locked out: {text}"
    );
    ensure!(
        callback.next_query(Duration::from_secs(1)).await.is_err(),
        "no code while locked"
    );

    // Another user is not locked; a wrong PKCE verifier does not redeem the code.
    let (verifier, challenge) = pkce()?;
    let params = browser_sign_in(
        &browser,
        &server,
        &callback,
        "dave",
        "dave-password-1",
        "s2",
        &challenge,
    )
    .await?;
    let code = params.get("code").context("no code")?;
    ctx.secret("authorization code", code);
    let (wrong, _) = pkce()?;
    let (status, body) = exchange(&ctx, &server, &callback, code, &wrong).await?;
    ensure!(
        status == 400 && body["error"] == "invalid_grant",
        "wrong verifier: {status} {body}"
    );
    let (status, body) = exchange(&ctx, &server, &callback, code, &verifier).await?;
    ensure!(status == 200, "the right verifier: {status} {body}");

    // A form whose request id was changed is no sign-in of this browser's.
    browser
        .goto(&authorize_url(&server, &callback.url(), "s3", &challenge))
        .await?;
    browser
        .set_value("request", "AAAAAAAAAAAAAAAAAAAAAA")
        .await?;
    browser.fill("username", "dave").await?;
    browser.fill("password", "dave-password-1").await?;
    browser.submit().await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("expired, or was not opened in this browser"),
        "tampered form: {text}"
    );
    ensure!(
        callback.next_query(Duration::from_secs(1)).await.is_err(),
        "no code for a tampered form"
    );
    browser.close().await?;
    Ok(())
}

async fn mid_session(ctx: Ctx) -> anyhow::Result<()> {
    let (_c, server, callback, gateway) =
        setup(&ctx, &[], &[("erin", "erin-password-1", &["billing"])]).await?;
    let browser = Browser::start().await?;
    let (verifier, challenge) = pkce()?;
    let params = browser_sign_in(
        &browser,
        &server,
        &callback,
        "erin",
        "erin-password-1",
        "s",
        &challenge,
    )
    .await?;
    let code = params.get("code").context("no code")?;
    ctx.secret("authorization code", code);
    let (status, body) = exchange(&ctx, &server, &callback, code, &verifier).await?;
    ensure!(status == 200, "{status} {body}");
    let access = body["access_token"]
        .as_str()
        .context("access_token")?
        .to_string();

    // Deactivating the client ends its users' tokens, and sign-ins go back as errors.
    ctx.kubectl(
        &[
            "patch",
            "oauthclient",
            "billing-web",
            "--type=merge",
            "-p",
            r#"{"spec":{"active":false}}"#,
        ],
        None,
    )?;
    eventually(
        WAIT,
        "the token of a deactivated client is inactive",
        || async {
            let v = introspect(&ctx, &server, &gateway, &access).await?;
            ensure!(v["active"] == false, "{v}");
            Ok(())
        },
    )
    .await?;
    let (status, _) = userinfo(&ctx, &server, &access).await?;
    ensure!(status == 401, "userinfo for a deactivated client: {status}");
    browser
        .goto(&authorize_url(&server, &callback.url(), "s", &challenge))
        .await?;
    let params = parse(&callback.next_query(WAIT).await?);
    ensure!(
        params.get("error").map(String::as_str) == Some("unauthorized_client"),
        "{params:?}"
    );

    // Active again: a fresh sign-in works; disabling the user then ends it.
    ctx.kubectl(
        &[
            "patch",
            "oauthclient",
            "billing-web",
            "--type=merge",
            "-p",
            r#"{"spec":{"active":true}}"#,
        ],
        None,
    )?;
    let (verifier, challenge) = pkce()?;
    let params = eventually(WAIT, "a sign-in of the reactivated client", || {
        let (browser, server, callback, challenge) = (&browser, &server, &callback, &challenge);
        async move {
            browser_sign_in(
                browser,
                server,
                callback,
                "erin",
                "erin-password-1",
                "s",
                challenge,
            )
            .await
        }
    })
    .await?;
    let code = params.get("code").context("no code")?;
    ctx.secret("authorization code", code);
    let (status, body) = exchange(&ctx, &server, &callback, code, &verifier).await?;
    ensure!(status == 200, "{status} {body}");
    let access = body["access_token"]
        .as_str()
        .context("access_token")?
        .to_string();
    ensure!(
        introspect(&ctx, &server, &gateway, &access).await?["active"] == true,
        "fresh token active"
    );
    ctx.kubectl(
        &[
            "patch",
            "oauthuser",
            "erin",
            "--type=merge",
            "-p",
            r#"{"spec":{"enabled":false}}"#,
        ],
        None,
    )?;
    eventually(WAIT, "a disabled user's token is inactive", || async {
        let v = introspect(&ctx, &server, &gateway, &access).await?;
        ensure!(v["active"] == false, "{v}");
        Ok(())
    })
    .await?;
    let (status, _) = userinfo(&ctx, &server, &access).await?;
    ensure!(status == 401, "userinfo for a disabled user: {status}");
    browser
        .goto(&authorize_url(&server, &callback.url(), "s", &challenge))
        .await?;
    browser.fill("username", "erin").await?;
    browser.fill("password", "erin-password-1").await?;
    browser.submit().await?;
    let text = browser.text().await?;
    ensure!(
        text.contains("Incorrect username or password."),
        "a disabled user cannot sign in: {text}"
    );
    browser.close().await?;
    Ok(())
}
