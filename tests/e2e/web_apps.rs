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
        (
            "one_sign_in_serves_every_client_until_logout_ends_it_everywhere",
            |c| Box::pin(single_sign_on(c)),
        ),
        (
            "refresh_tokens_rotate_run_out_at_the_count_and_a_reuse_revokes_the_grant",
            |c| Box::pin(refresh_tokens(c)),
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

/// A public web application allowed the authorization code grant and two refreshes,
/// seeing only the `billing` group; a confidential one (`portal`) with unlimited
/// refreshes; and `gateway`, a resource server that introspects.
fn app_yaml(ctx: &Ctx, redirect_uri: &str) -> String {
    format!(
        r#"apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: billing-web, namespace: {ns}}}
spec:
  clientId: billing-web
  displayName: Billing Web
  type: public
  grantTypes: [authorization_code, refresh_token]
  refreshCount: 2
  redirectUris: ["{redirect_uri}"]
  postLogoutRedirectUris: ["{redirect_uri}"]
  scopes: [invoices.read]
  allowedGroups: [billing]
  accessTokenLifetimeSeconds: 300
---
apiVersion: oauth-operator.dev/v1alpha1
kind: OAuthClient
metadata: {{name: portal, namespace: {ns}}}
spec:
  clientId: portal
  displayName: Portal
  grantTypes: [authorization_code, refresh_token]
  refreshCount: Unlimited
  redirectUris: ["{redirect_uri}"]
  scopes: [invoices.read]
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
    authorize_url_of("billing-web", server, redirect_uri, state, challenge)
}

fn authorize_url_of(
    client_id: &str,
    server: &Server,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> String {
    format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state={}&nonce=n-0S6_WzA2Mj&code_challenge={challenge}&code_challenge_method=S256",
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
    ctx.wait_ready("portal").await?;
    let secret = ctx.credentials("gateway-credentials").await?.1;
    // The server learns clients and users from its watches; the users were applied first
    // and need no controller, so they are there once the client is.
    serves_sign_in(&server, &callback).await?;
    Ok((controller, server, callback, secret))
}

/// Waits until the server shows billing-web's sign-in form (not a redirect back).
async fn serves_sign_in(server: &Server, callback: &CallbackServer) -> anyhow::Result<()> {
    let (_, challenge) = pkce()?;
    let probe = authorize_url(server, &callback.url(), "probe", &challenge);
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
    .await
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
        // prompt=login: a sign-in of its own even when the browser has a session already.
        .goto(&format!(
            "{}&prompt=login",
            authorize_url(server, &callback.url(), state, challenge)
        ))
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

/// Signs `user` in with a fresh PKCE pair, exchanges the code, and returns the token
/// response (the code noted for the leak check).
async fn signed_in(
    ctx: &Ctx,
    browser: &Browser,
    server: &Server,
    callback: &CallbackServer,
    user: &str,
    password: &str,
) -> anyhow::Result<serde_json::Value> {
    let (verifier, challenge) = pkce()?;
    let params =
        browser_sign_in(browser, server, callback, user, password, "s", &challenge).await?;
    let code = params.get("code").context("no code")?;
    ctx.secret("authorization code", code);
    let (status, body) = exchange(ctx, server, callback, code, &verifier).await?;
    ensure!(status == 200, "exchange: {status} {body}");
    Ok(body)
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
    note_tokens(ctx, &body);
    Ok((status, body))
}

/// Notes the tokens of a token response for the leak check.
fn note_tokens(ctx: &Ctx, body: &serde_json::Value) {
    for (what, key) in [
        ("access token", "access_token"),
        ("ID token", "id_token"),
        ("refresh token", "refresh_token"),
    ] {
        if let Some(t) = body[key].as_str() {
            ctx.secret(what, t);
        }
    }
}

/// A refresh of `billing-web` (public: its id alone), or of another client with `basic`.
async fn refresh(
    ctx: &Ctx,
    server: &Server,
    basic: Option<(&str, &str)>,
    token: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if basic.is_none() {
        form.push(("client_id", "billing-web"));
    }
    let (status, _, body) = server.token(&ctx.http, basic, &form).await?;
    note_tokens(ctx, &body);
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
        .goto(&format!(
            "{}&prompt=login",
            authorize_url(&server, &callback.url(), "s3", &challenge)
        ))
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
    let body = signed_in(
        &ctx,
        &browser,
        &server,
        &callback,
        "erin",
        "erin-password-1",
    )
    .await?;
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
    let r = body["refresh_token"].as_str().context("refresh_token")?;
    let (status, refused) = refresh(&ctx, &server, None, r).await?;
    ensure!(
        status == 400 && refused["error"] == "invalid_grant",
        "refresh of a deactivated client: {status} {refused}"
    );
    let (_, challenge) = pkce()?;
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
    // Deactivation ended every token issued up to the next whole second (`notBefore`):
    // a sign-in in that same second would be ended too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    serves_sign_in(&server, &callback).await?;
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
    let r = body["refresh_token"].as_str().context("refresh_token")?;
    let (status, refused) = refresh(&ctx, &server, None, r).await?;
    ensure!(
        status == 400 && refused["error"] == "invalid_grant",
        "refresh of a disabled user: {status} {refused}"
    );
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

async fn refresh_tokens(ctx: Ctx) -> anyhow::Result<()> {
    let (_c, server, callback, gateway) =
        setup(&ctx, &[], &[("frank", "frank-password-1", &["billing"])]).await?;
    let browser = Browser::start().await?;

    // billing-web may refresh twice: each refresh replaces the refresh token.
    let first = signed_in(
        &ctx,
        &browser,
        &server,
        &callback,
        "frank",
        "frank-password-1",
    )
    .await?;
    let r0 = first["refresh_token"]
        .as_str()
        .context("a refresh token")?
        .to_string();
    let (status, second) = refresh(&ctx, &server, None, &r0).await?;
    ensure!(status == 200, "first refresh: {status} {second}");
    let r1 = second["refresh_token"]
        .as_str()
        .context("rotated")?
        .to_string();
    ensure!(r1 != r0, "a new refresh token each time");
    let access = second["access_token"].as_str().context("access_token")?;
    let claims = verify_token(&ctx.http, &server, access, &server.url).await?;
    let original = verify_token(
        &ctx.http,
        &server,
        first["access_token"].as_str().unwrap_or_default(),
        &server.url,
    )
    .await?;
    ensure!(
        claims.grant_id == original.grant_id && claims.auth_time == original.auth_time,
        "the same sign-in"
    );
    ensure!(second["id_token"].is_string(), "an ID token with openid");
    let (status, third) = refresh(&ctx, &server, None, &r1).await?;
    ensure!(status == 200, "second refresh: {status} {third}");
    let r2 = third["refresh_token"]
        .as_str()
        .context("rotated")?
        .to_string();
    let (status, spent) = refresh(&ctx, &server, None, &r2).await?;
    ensure!(
        status == 400 && spent["error"] == "invalid_grant",
        "the count is used up: {status} {spent}"
    );
    let last_access = third["access_token"]
        .as_str()
        .context("access_token")?
        .to_string();
    ensure!(
        introspect(&ctx, &server, &gateway, &last_access).await?["active"] == true,
        "still signed in"
    );

    // A spent refresh token coming back revokes the grant: every token of it ends.
    let (status, reuse) = refresh(&ctx, &server, None, &r0).await?;
    ensure!(
        status == 400 && reuse["error"] == "invalid_grant",
        "reuse: {status} {reuse}"
    );
    eventually(
        WAIT,
        "the reused grant's access token is inactive",
        || async {
            let v = introspect(&ctx, &server, &gateway, &last_access).await?;
            ensure!(v["active"] == false, "{v}");
            Ok(())
        },
    )
    .await?;

    // Two refreshes with one token at once: at most one wins, whatever the timing.
    let fresh = signed_in(
        &ctx,
        &browser,
        &server,
        &callback,
        "frank",
        "frank-password-1",
    )
    .await?;
    let r = fresh["refresh_token"].as_str().context("refresh_token")?;
    let (a, b) = tokio::join!(
        refresh(&ctx, &server, None, r),
        refresh(&ctx, &server, None, r)
    );
    let wins = [a?.0, b?.0].iter().filter(|s| **s == 200).count();
    ensure!(wins <= 1, "{wins} refreshes with one token succeeded");

    // A confidential client introspects and revokes its own refresh tokens.
    let portal = ctx.credentials("portal-credentials").await?.1;
    let (verifier, challenge) = pkce()?;
    browser
        .goto(&format!(
            "{}&prompt=login",
            authorize_url_of("portal", &server, &callback.url(), "p", &challenge)
        ))
        .await?;
    browser.fill("username", "frank").await?;
    browser.fill("password", "frank-password-1").await?;
    browser.submit().await?;
    let params = parse(&callback.next_query(WAIT).await?);
    browser.close().await?;
    let code = params.get("code").context("no code")?;
    ctx.secret("authorization code", code);
    let redirect = callback.url();
    let (status, _, body) = server
        .token(
            &ctx.http,
            Some(("portal", &portal)),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
    note_tokens(&ctx, &body);
    ensure!(status == 200, "portal exchange: {status} {body}");
    let p0 = body["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_string();
    let own = |token: String| {
        let (ctx, server, portal) = (&ctx, &server, portal.clone());
        async move {
            let v: serde_json::Value = ctx
                .http
                .post(format!("{}/introspect", server.url))
                .basic_auth("portal", Some(&portal))
                .form(&[("token", token.as_str())])
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(v)
        }
    };
    let v = own(p0.clone()).await?;
    ensure!(
        v["active"] == true && v["username"] == "frank" && v["client_id"] == "portal",
        "refresh token introspected: {v}"
    );
    let (status, next) = refresh(&ctx, &server, Some(("portal", &portal)), &p0).await?;
    ensure!(status == 200, "portal refresh: {status} {next}");
    let p1 = next["refresh_token"]
        .as_str()
        .context("rotated")?
        .to_string();
    ensure!(
        own(p0.clone()).await?["active"] == false,
        "a spent refresh token is inactive"
    );
    ensure!(
        own(p1.clone()).await?["active"] == true,
        "the current one is active"
    );
    let revoked = ctx
        .http
        .post(format!("{}/revoke", server.url))
        .basic_auth("portal", Some(&portal))
        .form(&[("token", p1.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await?;
    ensure!(revoked.status() == 200, "revoke: {}", revoked.status());
    let (status, body) = refresh(&ctx, &server, Some(("portal", &portal)), &p1).await?;
    ensure!(
        status == 400 && body["error"] == "invalid_grant",
        "a revoked refresh token: {status} {body}"
    );
    let access = next["access_token"]
        .as_str()
        .context("access_token")?
        .to_string();
    eventually(
        WAIT,
        "the revoked grant's access token is inactive",
        || async {
            let v = introspect(&ctx, &server, &gateway, &access).await?;
            ensure!(v["active"] == false, "{v}");
            Ok(())
        },
    )
    .await?;
    Ok(())
}

async fn single_sign_on(ctx: Ctx) -> anyhow::Result<()> {
    let (_c, server, callback, _) =
        setup(&ctx, &[], &[("grace", "grace-password-1", &["billing"])]).await?;
    let browser = Browser::start().await?;
    let body = signed_in(
        &ctx,
        &browser,
        &server,
        &callback,
        "grace",
        "grace-password-1",
    )
    .await?;
    let id_token = body["id_token"].as_str().context("id_token")?.to_string();
    let id: IdTokenClaims = verify_jwt(&ctx.http, &server, &id_token, "billing-web").await?;
    ensure!(id.sid.is_some(), "the ID token names its sign-in session");

    // Another application, the same browser: back with a code, no form.
    let (_, portal_challenge) = pkce()?;
    browser
        .goto(&authorize_url_of(
            "portal",
            &server,
            &callback.url(),
            "p",
            &portal_challenge,
        ))
        .await?;
    let p = parse(&callback.next_query(WAIT).await?);
    ensure!(
        p.contains_key("code") && p.get("state").map(String::as_str) == Some("p"),
        "single sign-on: {p:?}"
    );
    if let Some(c) = p.get("code") {
        ctx.secret("authorization code", c);
    }
    let session = browser
        .cookies()
        .await?
        .into_iter()
        .find(|c| c.name() == "oauth_session")
        .context("a session cookie")?;
    ensure!(
        session.http_only() == Some(true),
        "the session cookie is HttpOnly"
    );
    let copied = session.value().to_string();
    ctx.secret("session cookie", &copied);

    // The cookie alone signs in from anywhere while the session lasts.
    let replay = |cookie: String| {
        let server_url =
            authorize_url_of("portal", &server, &callback.url(), "r", &portal_challenge)
                + "&prompt=none";
        async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let res = http
                .get(&server_url)
                .header("cookie", format!("oauth_session={cookie}"))
                .send()
                .await?;
            anyhow::Ok(
                res.headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
            )
        }
    };
    ensure!(
        replay(copied.clone()).await?.contains("code="),
        "the copied cookie works before logout"
    );

    // Logout, back to a registered URI with the state.
    browser
        .goto(&format!(
            "{}/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
            server.url,
            enc(&callback.url())
        ))
        .await?;
    let p = parse(&callback.next_query(WAIT).await?);
    ensure!(
        p.get("state").map(String::as_str) == Some("bye") && !p.contains_key("code"),
        "after logout: {p:?}"
    );

    // No session now, and a copy of the old cookie is refused on the server too.
    let (_, challenge) = pkce()?;
    let silent = format!(
        "{}&prompt=none",
        authorize_url(&server, &callback.url(), "n", &challenge)
    );
    browser.goto(&silent).await?;
    let p = parse(&callback.next_query(WAIT).await?);
    ensure!(
        p.get("error").map(String::as_str) == Some("login_required"),
        "after logout: {p:?}"
    );
    // The copy of the old cookie is refused too: the session is revoked on the server.
    let location = replay(copied).await?;
    ensure!(
        location.contains("error=login_required"),
        "a copied cookie after logout: {location}"
    );
    browser.close().await?;
    Ok(())
}
