//! The authorization code grant through the real router, without a cluster: `/authorize`
//! and its sign-in form, the code, and the code's checks at `/token`, up to the one write
//! that makes a code single use (the `OAuthGrant`), which needs the API server and is
//! tested end to end in `tests/e2e/sign_in.rs`. Here that write answers
//! `temporarily_unavailable`, which shows every check before it passed.

mod fixture;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use sha2::Digest;
use tower::ServiceExt;

use fixture::{
    Answer, CODE_ONLY, ISSUER, PASSWORD, PUBLIC_APP, REDIRECT, SECRET, USER, basic, with_peer,
};

type TestResult = Result<(), String>;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER))
}

fn expect(cond: bool, what: impl std::fmt::Display) -> TestResult {
    if cond { Ok(()) } else { Err(what.to_string()) }
}

fn router() -> Result<Router, String> {
    fixture::router(fixture::filled_index(true)).ok_or_else(|| "no router".to_string())
}

async fn send(router: &Router, req: Request<Body>) -> Result<Answer, String> {
    let res = router
        .clone()
        .oneshot(with_peer(req))
        .await
        .map_err(|e| e.to_string())?;
    Answer::read(res).await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authorize_query(client_id: &str, extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=st-1&scope=openid+profile&code_challenge={}&code_challenge_method=S256{extra}",
        enc(REDIRECT),
        challenge()
    )
}

async fn get(router: &Router, uri: &str) -> Result<Answer, String> {
    send(
        router,
        Request::get(uri)
            .body(Body::empty())
            .map_err(|e| e.to_string())?,
    )
    .await
}

async fn post(
    router: &Router,
    path: &str,
    cookie: Option<&str>,
    auth: Option<&str>,
    body: &str,
) -> Result<Answer, String> {
    let mut req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    send(
        router,
        req.body(Body::from(body.to_string()))
            .map_err(|e| e.to_string())?,
    )
    .await
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The sign-in page's request id and the cookie that goes with it.
fn form_of(a: &Answer) -> Result<(String, String), String> {
    let html = text(a);
    let id = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("no request id in the form")?
        .to_string();
    let set_cookie = a.header("set-cookie").ok_or("no cookie")?;
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    expect(
        cookie.starts_with(&format!("oauth_authz_{id}=")),
        format!("cookie {set_cookie} for {id}"),
    )?;
    Ok((id, cookie))
}

/// The query parameters of a redirect's `Location`.
fn location_params(a: &Answer) -> Result<std::collections::HashMap<String, String>, String> {
    let loc = a.header("location").ok_or("no Location")?;
    let query = loc.split_once('?').map(|(_, q)| q).ok_or("no query")?;
    Ok(form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect())
}

/// Signs in through the form and returns the code.
async fn sign_in(router: &Router, client_id: &str) -> Result<String, String> {
    Ok(sign_in_with_session(router, client_id).await?.0)
}

/// Signs in through the form and returns the code and the session cookie.
async fn sign_in_with_session(
    router: &Router,
    client_id: &str,
) -> Result<(String, String), String> {
    let page = get(router, &authorize_query(client_id, "")).await?;
    let (id, cookie) = form_of(&page)?;
    let body = format!("request={id}&username={USER}&password={}", enc(PASSWORD));
    let a = post(router, "/authorize/login", Some(&cookie), None, &body).await?;
    expect(
        a.status == 303,
        format!("sign-in status {}: {}", a.status, text(&a)),
    )?;
    let params = location_params(&a)?;
    let session = a
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("oauth_session="))
        .and_then(|c| c.split(';').next())
        .ok_or("no session cookie")?
        .to_string();
    let code = params
        .get("code")
        .cloned()
        .ok_or_else(|| "no code".to_string())?;
    Ok((code, session))
}

async fn get_with_cookie(router: &Router, uri: &str, cookie: &str) -> Result<Answer, String> {
    send(
        router,
        Request::get(uri)
            .header("cookie", cookie)
            .body(Body::empty())
            .map_err(|e| e.to_string())?,
    )
    .await
}

#[tokio::test]
async fn a_sign_in_session_signs_other_clients_in_without_asking() -> TestResult {
    let r = router()?;
    let (_, session) = sign_in_with_session(&r, PUBLIC_APP).await?;
    // Another client, same browser: straight back with a code.
    let again = get_with_cookie(&r, &authorize_query(CODE_ONLY, ""), &session).await?;
    expect(
        again.status == 303,
        format!("status {}: {}", again.status, text(&again)),
    )?;
    expect(
        location_params(&again)?.contains_key("code"),
        "a code without a form",
    )?;
    let silent = get_with_cookie(&r, &authorize_query(CODE_ONLY, "&prompt=none"), &session).await?;
    expect(
        location_params(&silent)?.contains_key("code"),
        "prompt=none with a session",
    )?;
    // prompt=login asks again; so does a tampered session.
    let login = get_with_cookie(&r, &authorize_query(CODE_ONLY, "&prompt=login"), &session).await?;
    expect(
        login.status == 200 && text(&login).contains("Sign in"),
        "prompt=login shows the form",
    )?;
    let forged = get_with_cookie(
        &r,
        &authorize_query(CODE_ONLY, "&prompt=none"),
        "oauth_session=AAAA",
    )
    .await?;
    expect(
        location_params(&forged)?.get("error").map(String::as_str) == Some("login_required"),
        "a forged session is none",
    )
}

#[tokio::test]
async fn logout_asks_without_a_hint_and_never_redirects_to_an_unregistered_uri() -> TestResult {
    let r = router()?;
    let ask = get(&r, "/logout").await?;
    expect(
        ask.status == 200 && text(&ask).contains("Do you want to sign out?"),
        text(&ask),
    )?;
    let evil = get(
        &r,
        &format!(
            "/logout?client_id={PUBLIC_APP}&post_logout_redirect_uri={}",
            enc("https://evil.example.test/")
        ),
    )
    .await?;
    expect(
        evil.status == 400 && evil.header("location").is_none(),
        "no open redirect",
    )
}

#[tokio::test]
async fn the_sign_in_page_names_the_application_and_sets_a_bound_cookie() -> TestResult {
    let r = router()?;
    let a = get(&r, &authorize_query(PUBLIC_APP, "")).await?;
    expect(a.status == 200, format!("status {}", a.status))?;
    let html = text(&a);
    expect(
        html.contains("Public &lt;App&gt;</strong> asks you to sign in"),
        &html,
    )?;
    expect(
        html.contains(&format!("action=\"{ISSUER}/authorize/login\"")),
        "form action",
    )?;
    let cookie = a.header("set-cookie").ok_or("no cookie")?;
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/authorize", "Max-Age=600"] {
        expect(cookie.contains(attr), format!("{attr} in {cookie}"))?;
    }
    expect(!cookie.contains("Secure"), "plain-HTTP issuer: no Secure")?;
    expect(a.header("x-frame-options") == Some("DENY"), "no framing")?;
    expect(a.header("cache-control") == Some("no-store"), "not cached")?;
    form_of(&a).map(|_| ())
}

#[tokio::test]
async fn an_unknown_client_or_redirect_uri_gets_an_error_page_and_no_redirect() -> TestResult {
    let r = router()?;
    let unknown = get(&r, &authorize_query("nobody", "")).await?;
    let evil = get(
        &r,
        &format!(
            "/authorize?response_type=code&client_id={PUBLIC_APP}&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
            enc("https://evil.example.test/callback"),
            challenge()
        ),
    )
    .await?;
    for a in [unknown, evil] {
        expect(a.status == 400, format!("status {}", a.status))?;
        expect(a.header("location").is_none(), "no redirect")?;
        expect(text(&a).contains("Sign-in failed"), text(&a))?;
    }
    Ok(())
}

#[tokio::test]
async fn other_errors_go_back_to_the_client_with_state_and_iss() -> TestResult {
    let r = router()?;
    let token = get(
        &r,
        &authorize_query(PUBLIC_APP, "").replace("response_type=code", "response_type=token"),
    )
    .await?;
    expect(token.status == 303, format!("status {}", token.status))?;
    let p = location_params(&token)?;
    expect(
        p.get("error").map(String::as_str) == Some("unsupported_response_type"),
        format!("{p:?}"),
    )?;
    expect(
        p.get("state").map(String::as_str) == Some("st-1"),
        format!("{p:?}"),
    )?;
    expect(
        p.get("iss").map(String::as_str) == Some(ISSUER),
        format!("{p:?}"),
    )?;
    expect(
        token
            .header("location")
            .is_some_and(|l| l.starts_with(REDIRECT)),
        "to the redirect URI",
    )?;

    let none = get(&r, &authorize_query(PUBLIC_APP, "&prompt=none")).await?;
    expect(
        location_params(&none)?.get("error").map(String::as_str) == Some("login_required"),
        "prompt=none",
    )?;
    let plain = get(
        &r,
        &authorize_query(PUBLIC_APP, "")
            .replace("code_challenge_method=S256", "code_challenge_method=plain"),
    )
    .await?;
    expect(
        location_params(&plain)?.get("error").map(String::as_str) == Some("invalid_request"),
        "plain PKCE",
    )
}

#[tokio::test]
async fn the_form_needs_its_cookie_and_the_right_password() -> TestResult {
    let r = router()?;
    let page = get(&r, &authorize_query(PUBLIC_APP, "")).await?;
    let (id, cookie) = form_of(&page)?;
    let body = |password: &str| format!("request={id}&username={USER}&password={}", enc(password));

    // Another browser (no cookie), or a forged cookie: the form is refused (CSRF).
    let no_cookie = post(&r, "/authorize/login", None, None, &body(PASSWORD)).await?;
    expect(
        no_cookie.status == 400 && no_cookie.header("location").is_none(),
        "no cookie, no sign-in",
    )?;
    let forged = format!("oauth_authz_{id}=AAAA");
    let forged = post(&r, "/authorize/login", Some(&forged), None, &body(PASSWORD)).await?;
    expect(forged.status == 400, "forged cookie")?;

    let wrong = post(&r, "/authorize/login", Some(&cookie), None, &body("wrong")).await?;
    expect(
        wrong.status == 200 && wrong.header("location").is_none(),
        "wrong password stays on the form",
    )?;
    let html = text(&wrong);
    expect(html.contains("Incorrect username or password."), &html)?;
    expect(!html.contains("wrong\""), "the password is never echoed")?;

    let right = post(&r, "/authorize/login", Some(&cookie), None, &body(PASSWORD)).await?;
    expect(right.status == 303, format!("status {}", right.status))?;
    let p = location_params(&right)?;
    expect(
        p.contains_key("code") && p.get("state").map(String::as_str) == Some("st-1"),
        format!("{p:?}"),
    )?;
    expect(
        p.get("iss").map(String::as_str) == Some(ISSUER),
        "iss (RFC 9207)",
    )?;
    let cookies: Vec<&str> = right
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    expect(
        cookies
            .iter()
            .any(|c| c.starts_with("oauth_authz_") && c.contains("Max-Age=0")),
        format!("the request's cookie is cleared: {cookies:?}"),
    )?;
    expect(
        cookies.iter().any(|c| {
            c.starts_with("oauth_session=") && c.contains("HttpOnly") && c.contains("Path=/;")
        }),
        format!("a sign-in session starts: {cookies:?}"),
    )
}

#[tokio::test]
async fn repeated_failures_lock_the_user_out_even_with_the_right_password() -> TestResult {
    let r = router()?;
    let page = get(&r, &authorize_query(PUBLIC_APP, "")).await?;
    let (id, cookie) = form_of(&page)?;
    let body = |password: &str| format!("request={id}&username={USER}&password={}", enc(password));
    // The fixture's lockout: 10 failures.
    for _ in 0..10 {
        post(&r, "/authorize/login", Some(&cookie), None, &body("guess")).await?;
    }
    let locked = post(&r, "/authorize/login", Some(&cookie), None, &body(PASSWORD)).await?;
    expect(
        locked.status == 200 && locked.header("location").is_none(),
        "locked",
    )?;
    expect(
        text(&locked).contains("Incorrect username or password."),
        "the same answer as a wrong password",
    )
}

/// `code` with one character in the middle changed: six bits of ciphertext, always. (The
/// last character may carry unused bits, so changing it may change nothing.)
fn tampered(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn a_code_is_bound_to_its_client_redirect_uri_and_verifier() -> TestResult {
    let r = router()?;
    let code = sign_in(&r, PUBLIC_APP).await?;
    let exchange = |client: &str, redirect: &str, verifier: &str, code: &str| {
        format!(
            "grant_type=authorization_code&client_id={client}&code={}&redirect_uri={}&code_verifier={verifier}",
            enc(code),
            enc(redirect)
        )
    };
    let invalid_grant = r#"{"error":"invalid_grant"}"#;
    for (what, body) in [
        (
            "wrong verifier",
            exchange(PUBLIC_APP, REDIRECT, &VERIFIER.replace('d', "e"), &code),
        ),
        (
            "other redirect",
            exchange(PUBLIC_APP, "http://127.0.0.1/cb", VERIFIER, &code),
        ),
        (
            "tampered code",
            exchange(PUBLIC_APP, REDIRECT, VERIFIER, &tampered(&code)),
        ),
    ] {
        let a = post(&r, "/token", None, None, &body).await?;
        expect(
            a.status == 400 && text(&a) == invalid_grant,
            format!("{what}: {} {}", a.status, text(&a)),
        )?;
    }
    // Another client cannot redeem it, even with its own valid secret.
    let other = post(
        &r,
        "/token",
        None,
        Some(&basic(CODE_ONLY, SECRET)),
        &format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            enc(&code),
            enc(REDIRECT)
        ),
    )
    .await?;
    expect(
        text(&other) == invalid_grant,
        format!("other client: {}", text(&other)),
    )?;
    // A missing verifier is a malformed request.
    let missing = post(
        &r,
        "/token",
        None,
        None,
        &format!(
            "grant_type=authorization_code&client_id={PUBLIC_APP}&code={}&redirect_uri={}",
            enc(&code),
            enc(REDIRECT)
        ),
    )
    .await?;
    expect(
        text(&missing).contains("code_verifier is missing"),
        text(&missing),
    )?;
    // Everything right: only the single-use record is left, which needs the API server.
    let ok = post(
        &r,
        "/token",
        None,
        None,
        &exchange(PUBLIC_APP, REDIRECT, VERIFIER, &code),
    )
    .await?;
    expect(
        ok.status == 503 && text(&ok).contains("temporarily_unavailable"),
        format!("{} {}", ok.status, text(&ok)),
    )
}

#[tokio::test]
async fn a_confidential_client_must_authenticate_to_redeem() -> TestResult {
    let r = router()?;
    let code = sign_in(&r, CODE_ONLY).await?;
    let body = format!(
        "grant_type=authorization_code&client_id={CODE_ONLY}&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(&code),
        enc(REDIRECT)
    );
    let a = post(&r, "/token", None, None, &body).await?;
    expect(
        a.status == 401 && text(&a).contains("invalid_client"),
        format!("{} {}", a.status, text(&a)),
    )?;
    let ok = post(
        &r,
        "/token",
        None,
        Some(&basic(CODE_ONLY, SECRET)),
        &body.replace(&format!("client_id={CODE_ONLY}&"), ""),
    )
    .await?;
    expect(
        ok.status == 503,
        format!("authenticated: {} {}", ok.status, text(&ok)),
    )
}

#[tokio::test]
async fn discovery_lists_the_authorization_code_grant_with_pkce() -> TestResult {
    let r = router()?;
    let d = get(&r, "/.well-known/openid-configuration").await?.json();
    expect(
        d["authorization_endpoint"] == format!("{ISSUER}/authorize"),
        "authorization_endpoint",
    )?;
    expect(
        d["userinfo_endpoint"] == format!("{ISSUER}/userinfo"),
        "userinfo_endpoint",
    )?;
    expect(
        d["code_challenge_methods_supported"] == serde_json::json!(["S256"]),
        "S256 only",
    )?;
    expect(
        d["response_types_supported"] == serde_json::json!(["code"]),
        "code only",
    )?;
    expect(
        d["authorization_response_iss_parameter_supported"] == true,
        "RFC 9207",
    )?;
    expect(
        d["id_token_signing_alg_values_supported"] == serde_json::json!(["ES256"]),
        "ID token algorithms",
    )
}

#[tokio::test]
async fn userinfo_wants_a_users_access_token() -> TestResult {
    let r = router()?;
    let none = get(&r, "/userinfo").await?;
    expect(
        none.status == 401 && none.header("www-authenticate").is_some(),
        "no token",
    )?;
    // A client-credentials token describes no user.
    let cc = post(
        &r,
        "/token",
        None,
        Some(&basic(fixture::CLIENT_ID, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    let token = cc.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let req = Request::get("/userinfo")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let a = send(&r, req).await?;
    expect(
        a.status == 401 && text(&a).contains("invalid_token"),
        format!("{} {}", a.status, text(&a)),
    )
}

/// The router of [`router`], with two upstream providers: `corp`, whose client secret is
/// in the upstream Secret and whose issuer nothing answers (port 1 of the loopback), and
/// `unconfigured`, whose key is missing from it.
fn router_with_upstreams() -> Result<Router, String> {
    use oauth_operator::api::{ClaimMapping, OAuthUpstream, OAuthUpstreamSpec};
    let index = fixture::filled_index(true);
    let upstream = |name: &str, key: &str| {
        let mut u = OAuthUpstream::new(
            name,
            OAuthUpstreamSpec {
                display_name: format!("{name} <SSO>"),
                issuer: "http://127.0.0.1:1".into(),
                client_id: "us".into(),
                client_secret_key: key.into(),
                scopes: vec!["openid".into()],
                claims: ClaimMapping::default(),
            },
        );
        u.metadata.uid = Some(format!("uid-{name}"));
        u
    };
    index.reset_upstreams([&upstream("corp", "corp"), &upstream("unconfigured", "none")]);
    index.set_upstream_secrets(std::collections::HashMap::from([(
        "corp".to_string(),
        oauth_operator::auth::secret::SecretString::new("upstream-client-secret".into()),
    )]));
    fixture::router(index).ok_or_else(|| "no router".to_string())
}

#[tokio::test]
async fn upstream_providers_get_a_link_and_each_failure_is_a_page() -> TestResult {
    let r = router_with_upstreams()?;
    let page = get(&r, &authorize_query(PUBLIC_APP, "")).await?;
    let (id, cookie) = form_of(&page)?;
    let html = text(&page);
    let link = format!("{ISSUER}/authorize/upstream/corp?request={id}");
    expect(
        html.contains(&format!(
            "<a class=\"upstream\" href=\"{link}\">Sign in with corp &lt;SSO&gt;</a>"
        )),
        &html,
    )?;
    expect(html.contains("Sign in with unconfigured"), "both providers")?;

    // Without the pending request's cookie, or for another request: expired.
    let a = get(&r, &link).await?;
    expect(a.status == 400 && text(&a).contains("expired"), text(&a))?;
    let a = get_with_cookie(
        &r,
        "/authorize/upstream/corp?request=AAAAAAAAAAAAAAAAAAAAAA",
        &cookie,
    )
    .await?;
    expect(a.status == 400, format!("another request: {}", a.status))?;
    // An unknown provider, one without its secret, one that cannot be reached.
    let a = get_with_cookie(
        &r,
        &format!("/authorize/upstream/nope?request={id}"),
        &cookie,
    )
    .await?;
    expect(a.status == 400 && text(&a).contains("not known"), text(&a))?;
    let a = get_with_cookie(
        &r,
        &format!("/authorize/upstream/unconfigured?request={id}"),
        &cookie,
    )
    .await?;
    expect(
        a.status == 503 && text(&a).contains("not configured"),
        text(&a),
    )?;
    let a = get_with_cookie(
        &r,
        &format!("/authorize/upstream/corp?request={id}"),
        &cookie,
    )
    .await?;
    expect(
        a.status == 502 && text(&a).contains("could not sign you in"),
        format!("{}: {}", a.status, text(&a)),
    )?;
    expect(a.header("location").is_none(), "never a redirect")?;
    expect(!text(&a).contains("upstream-client-secret"), "no secret")?;

    // A callback without the upstream leg's cookie, or with a state that is not one.
    let a = get_with_cookie(
        &r,
        "/authorize/callback?code=c&state=AAAAAAAAAAAAAAAAAAAAAA",
        &cookie,
    )
    .await?;
    expect(a.status == 400 && text(&a).contains("expired"), text(&a))?;
    let a = get(&r, "/authorize/callback?code=c&state=x%3B%20Path%3D%2F").await?;
    expect(a.status == 400, format!("bad state: {}", a.status))?;
    let a = get(&r, "/authorize/callback?error=access_denied").await?;
    expect(a.status == 400, format!("no state: {}", a.status))?;
    expect(a.header("location").is_none(), "never a redirect")
}
