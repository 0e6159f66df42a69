//! The token server's endpoints, example by example, through the real router
//! (`router(state).oneshot(request)`) over an index filled by hand (see `fixture`): no
//! cluster, a few seconds in all. Read top to bottom, they are the endpoints' behaviour:
//! the RFC 6749 section 5.2 error table of `/token`, a token that verifies against
//! `/jwks`, introspection (RFC 7662), revocation (RFC 7009), registration's refusals
//! before it reaches the API server (RFC 7591 / 7592), discovery (RFC 8414), and health.
//!
//! The exact bodies and headers are asserted on purpose: they are the wire contract.

mod fixture;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

use fixture::{
    ACCESS_TOKEN, AUDIENCE, Answer, CHOSEN, CLIENT_ID, CODE_ONLY, IAT, INACTIVE, ISSUER,
    JWT_BEARER, KEYED, REGISTERED, SECRET, assertion, basic, with_peer,
};
use oauth_operator::index::Index;

const FORM: &str = "application/x-www-form-urlencoded";
const BASIC_CHALLENGE: &str = "Basic realm=\"oauth-operator\", charset=\"UTF-8\"";

type TestResult = Result<(), String>;

/// A server over the filled index, and the index, to change it under the server.
fn server() -> Result<(Router, Arc<Index>), String> {
    server_with(fixture::filled_index(true))
}

fn server_with(index: Arc<Index>) -> Result<(Router, Arc<Index>), String> {
    let router = fixture::router(index.clone()).ok_or("no router")?;
    Ok((router, index))
}

async fn send(router: &Router, req: Request<Body>) -> Result<Answer, String> {
    let res = router
        .clone()
        .oneshot(with_peer(req))
        .await
        .map_err(|e| e.to_string())?;
    Answer::read(res).await
}

/// A form POST, with an optional `Authorization` header.
fn post_form(path: &str, auth: Option<&str>, body: &str) -> Result<Request<Body>, String> {
    let mut req = Request::post(path).header("content-type", FORM);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.body(Body::from(body.to_string()))
        .map_err(|e| e.to_string())
}

fn get(path: &str) -> Result<Request<Body>, String> {
    Request::get(path)
        .body(Body::empty())
        .map_err(|e| e.to_string())
}

fn expect(cond: bool, what: impl std::fmt::Display) -> TestResult {
    if cond { Ok(()) } else { Err(what.to_string()) }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> TestResult {
    expect(got == want, format!("{what}: got {got:?}, want {want:?}"))
}

/// The status and exact body of an RFC 6749 error, and the headers every error carries.
fn expect_error(a: &Answer, status: u16, body: &str) -> TestResult {
    expect_eq(a.status, status, "status")?;
    expect_eq(
        std::str::from_utf8(&a.body).unwrap_or_default(),
        body,
        "body",
    )?;
    expect_eq(a.header("content-type"), Some("application/json"), "type")?;
    expect_eq(a.header("cache-control"), Some("no-store"), "cache-control")?;
    expect_eq(a.header("pragma"), Some("no-cache"), "pragma")
}

async fn token_request(router: &Router, auth: Option<&str>, body: &str) -> Result<Answer, String> {
    send(router, post_form("/token", auth, body)?).await
}

/// A fresh access token of `client_id`.
async fn access_token(router: &Router, client_id: &str) -> Result<String, String> {
    let a = token_request(
        router,
        Some(&basic(client_id, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    expect_eq(a.status, 200, "token status")?;
    a.json()["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no access_token".to_string())
}

async fn introspect(router: &Router, token: &str) -> Result<Answer, String> {
    let body = format!("token={token}");
    send(
        router,
        post_form("/introspect", Some(&basic(CLIENT_ID, SECRET)), &body)?,
    )
    .await
}

// --- POST /token: RFC 6749 section 5.2, row by row -------------------------------------

#[tokio::test]
async fn token_without_grant_type_is_invalid_request() -> TestResult {
    let (router, _) = server()?;
    let a = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), "scope=read").await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_request","error_description":"grant_type is missing"}"#,
    )
}

#[tokio::test]
async fn a_repeated_parameter_is_invalid_request() -> TestResult {
    let (router, _) = server()?;
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials&scope=read&scope=write",
    )
    .await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_request","error_description":"a parameter was repeated"}"#,
    )
}

#[tokio::test]
async fn a_body_that_is_not_a_form_is_invalid_request() -> TestResult {
    let (router, _) = server()?;
    let req = Request::post("/token")
        .header("content-type", "application/json")
        .header("authorization", basic(CLIENT_ID, SECRET))
        .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
        .map_err(|e| e.to_string())?;
    let a = send(&router, req).await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_request","error_description":"the body must be application/x-www-form-urlencoded"}"#,
    )
}

#[tokio::test]
async fn a_body_over_the_limit_is_invalid_request() -> TestResult {
    let (router, _) = server()?;
    let body = format!("grant_type=client_credentials&x={}", "a".repeat(20 * 1024));
    let a = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), &body).await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_request","error_description":"the body is too large or unreadable"}"#,
    )
}

#[tokio::test]
async fn two_authentication_methods_at_once_is_invalid_request() -> TestResult {
    let (router, _) = server()?;
    let body = format!("grant_type=client_credentials&client_secret={SECRET}");
    let a = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), &body).await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_request","error_description":"more than one client authentication method was used"}"#,
    )
}

#[tokio::test]
async fn another_grant_type_is_unsupported_grant_type_before_the_client_is_checked() -> TestResult {
    let (router, _) = server()?;
    // Not even valid Basic: the grant is checked first, as RFC 6749 orders it.
    let a = token_request(&router, Some("Basic !!!"), "grant_type=password").await?;
    expect_error(&a, 400, r#"{"error":"unsupported_grant_type"}"#)?;
    expect_eq(a.header("www-authenticate"), None, "no challenge")
}

#[tokio::test]
async fn a_wrong_secret_over_basic_is_invalid_client_with_a_challenge() -> TestResult {
    let (router, _) = server()?;
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, "wrong")),
        "grant_type=client_credentials",
    )
    .await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    expect_eq(
        a.header("www-authenticate"),
        Some(BASIC_CHALLENGE),
        "www-authenticate",
    )
}

#[tokio::test]
async fn a_wrong_secret_in_the_body_is_invalid_client_without_a_challenge() -> TestResult {
    let (router, _) = server()?;
    let body = format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=wrong");
    let a = token_request(&router, None, &body).await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    expect_eq(a.header("www-authenticate"), None, "www-authenticate")
}

#[tokio::test]
async fn no_credentials_at_all_is_invalid_client_with_a_challenge() -> TestResult {
    let (router, _) = server()?;
    let a = token_request(&router, None, "grant_type=client_credentials").await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    expect_eq(
        a.header("www-authenticate"),
        Some(BASIC_CHALLENGE),
        "challenge",
    )
}

#[tokio::test]
async fn unknown_and_deactivated_clients_get_the_wrong_secret_answer() -> TestResult {
    let (router, _) = server()?;
    let wrong = token_request(
        &router,
        Some(&basic(CLIENT_ID, "wrong")),
        "grant_type=client_credentials",
    )
    .await?;
    for id in ["nobody", INACTIVE] {
        let a = token_request(
            &router,
            Some(&basic(id, SECRET)),
            "grant_type=client_credentials",
        )
        .await?;
        expect_eq((a.status, &a.body), (wrong.status, &wrong.body), id)?;
    }
    Ok(())
}

// --- Verification by kind: generated secrets (SHA-256) and chosen ones (argon2id) ---------

/// `n` wrong secrets for `client_id`, each answered `invalid_client`.
async fn wrong_secrets(router: &Router, client_id: &str, n: usize) -> TestResult {
    for i in 0..n {
        let a = token_request(
            router,
            Some(&basic(client_id, &format!("guess-{i}"))),
            "grant_type=client_credentials",
        )
        .await?;
        expect_eq(a.status, 401, "a wrong secret")?;
    }
    Ok(())
}

#[tokio::test]
async fn a_flood_of_wrong_secrets_never_refuses_the_holder_of_a_generated_secret() -> TestResult {
    let (router, _) = server()?;
    // Three times the fixture's lockout threshold (10 failures).
    wrong_secrets(&router, CLIENT_ID, 30).await?;
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    expect_eq(a.status, 200, "the holder after the flood")
}

#[tokio::test]
async fn a_chosen_secret_locks_after_repeated_failures_but_keeps_its_warm_holder() -> TestResult {
    let grant = "grant_type=client_credentials";
    // Cold: after the fixture's 10 failures even the right secret is refused, unchecked.
    let (cold, _) = server()?;
    wrong_secrets(&cold, CHOSEN, 10).await?;
    let a = token_request(&cold, Some(&basic(CHOSEN, SECRET)), grant).await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    // Warm: a workload that passed argon2id before the attack is still served.
    let (warm, _) = server()?;
    let a = token_request(&warm, Some(&basic(CHOSEN, SECRET)), grant).await?;
    expect_eq(a.status, 200, "the chosen secret verifies (argon2id)")?;
    wrong_secrets(&warm, CHOSEN, 10).await?;
    let a = token_request(&warm, Some(&basic(CHOSEN, SECRET)), grant).await?;
    expect_eq(a.status, 200, "the warm holder while locked")
}

#[tokio::test]
async fn a_client_without_the_grant_is_unauthorized_client() -> TestResult {
    let (router, _) = server()?;
    let a = token_request(
        &router,
        Some(&basic(CODE_ONLY, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    expect_error(&a, 400, r#"{"error":"unauthorized_client"}"#)
}

#[tokio::test]
async fn scope_or_audience_beyond_the_clients_is_invalid_scope_or_target() -> TestResult {
    let (router, _) = server()?;
    for body in [
        "grant_type=client_credentials&scope=admin",
        "grant_type=client_credentials&scope=read%22",
    ] {
        let a = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), body).await?;
        expect_error(&a, 400, r#"{"error":"invalid_scope"}"#)
            .map_err(|e| format!("{body}: {e}"))?;
    }
    // RFC 8707 section 2: a target the client does not ask for is invalid_target.
    for body in [
        "grant_type=client_credentials&audience=https%3A%2F%2Fother.test",
        "grant_type=client_credentials&resource=https%3A%2F%2Fother.test",
        "grant_type=client_credentials&resource=not-a-uri",
    ] {
        let a = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), body).await?;
        expect_error(&a, 400, INVALID_TARGET_BODY).map_err(|e| format!("{body}: {e}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn without_signing_keys_the_answer_is_503_with_retry_after() -> TestResult {
    let (router, _) = server_with(fixture::filled_index(false))?;
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    expect_error(&a, 503, r#"{"error":"temporarily_unavailable"}"#)?;
    expect_eq(a.header("retry-after"), Some("1"), "retry-after")
}

#[tokio::test]
async fn a_client_credentials_token_verifies_against_the_published_keys() -> TestResult {
    let (router, _) = server()?;
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials&scope=read",
    )
    .await?;
    expect_eq(a.status, 200, "status")?;
    expect_eq(a.header("cache-control"), Some("no-store"), "cache-control")?;
    expect_eq(a.header("pragma"), Some("no-cache"), "pragma")?;
    let body = a.json();
    expect_eq(body["token_type"].as_str(), Some("Bearer"), "token_type")?;
    expect_eq(body["expires_in"].as_u64(), Some(600), "expires_in")?;
    expect_eq(body["scope"].as_str(), Some("read"), "scope")?;
    let jwt = body["access_token"].as_str().ok_or("no access_token")?;

    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&send(&router, get("/jwks")?).await?.body)
            .map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
    let jwk = jwks
        .find(header.kid.as_deref().ok_or("no kid")?)
        .ok_or("kid not published")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .map_err(|e| e.to_string())?
        .claims;
    expect_eq(claims["client_id"].as_str(), Some(CLIENT_ID), "client_id")?;
    expect_eq(claims["sub"].as_str(), Some(CLIENT_ID), "sub")?;
    expect_eq(claims["scope"].as_str(), Some("read"), "scope claim")?;
    expect_eq(
        claims["roles"].clone(),
        serde_json::json!(["member"]),
        "roles",
    )
}

#[tokio::test]
async fn without_a_scope_parameter_every_allowed_scope_is_granted() -> TestResult {
    let (router, _) = server()?;
    let body =
        format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}");
    let a = token_request(&router, None, &body).await?;
    expect_eq(a.status, 200, "status")?;
    expect_eq(a.json()["scope"].as_str(), Some("read write"), "scope")
}

#[tokio::test]
async fn other_methods_on_token_are_405_without_oauth_headers() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, get("/token")?).await?;
    expect_eq(a.status, 405, "status")?;
    expect_eq(a.header("cache-control"), None, "cache-control")
}

// --- POST /introspect (RFC 7662) --------------------------------------------------------

#[tokio::test]
async fn a_fresh_token_introspects_as_active() -> TestResult {
    let (router, _) = server()?;
    let token = access_token(&router, CLIENT_ID).await?;
    let a = introspect(&router, &token).await?;
    expect_eq(a.status, 200, "status")?;
    expect_eq(a.header("cache-control"), Some("no-store"), "cache-control")?;
    let v = a.json();
    expect_eq(v["active"].as_bool(), Some(true), "active")?;
    expect_eq(v["client_id"].as_str(), Some(CLIENT_ID), "client_id")?;
    expect_eq(v["scope"].as_str(), Some("read write"), "scope")?;
    expect_eq(v["token_type"].as_str(), Some("Bearer"), "token_type")?;
    expect_eq(v["iss"].as_str(), Some(ISSUER), "iss")
}

#[tokio::test]
async fn a_foreign_token_introspects_as_only_inactive() -> TestResult {
    let (router, _) = server()?;
    let a = introspect(&router, "not.a.jwt").await?;
    expect_eq(a.status, 200, "status")?;
    expect_eq(&a.body[..], br#"{"active":false}"#, "body")
}

#[tokio::test]
async fn revoked_and_deactivated_clients_tokens_introspect_as_inactive() -> TestResult {
    let (router, index) = server()?;
    let revoked = access_token(&router, CLIENT_ID).await?;
    let jti = introspect(&router, &revoked).await?.json()["jti"]
        .as_str()
        .map(str::to_string)
        .ok_or("no jti")?;
    index.revoke(&jti, i64::MAX);
    expect_eq(
        introspect(&router, &revoked).await?.json(),
        serde_json::json!({"active": false}),
        "revoked",
    )?;

    let registered = access_token(&router, REGISTERED).await?;
    let mut off = fixture::verifier("r", REGISTERED, None);
    off.spec.active = false;
    index.apply_verifier(&off);
    expect_eq(
        introspect(&router, &registered).await?.json(),
        serde_json::json!({"active": false}),
        "deactivated",
    )
}

#[tokio::test]
async fn introspection_needs_client_authentication_and_a_token() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, post_form("/introspect", None, "token=x")?).await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    let a = send(
        &router,
        post_form("/introspect", Some(&basic(CLIENT_ID, SECRET)), "")?,
    )
    .await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_request","error_description":"token is missing"}"#,
    )
}

// --- POST /revoke (RFC 7009) ------------------------------------------------------------

#[tokio::test]
async fn revoking_an_unknown_token_is_200() -> TestResult {
    let (router, _) = server()?;
    let a = send(
        &router,
        post_form("/revoke", Some(&basic(CLIENT_ID, SECRET)), "token=whatever")?,
    )
    .await?;
    expect_eq(a.status, 200, "status")?;
    expect(a.body.is_empty(), "empty body")?;
    expect_eq(a.header("cache-control"), Some("no-store"), "cache-control")
}

#[tokio::test]
async fn only_the_client_a_token_was_issued_to_may_revoke_it() -> TestResult {
    let (router, _) = server()?;
    let theirs = access_token(&router, REGISTERED).await?;
    let body = format!("token={theirs}");
    let a = send(
        &router,
        post_form("/revoke", Some(&basic(CLIENT_ID, SECRET)), &body)?,
    )
    .await?;
    expect_error(&a, 400, r#"{"error":"unauthorized_client"}"#)
}

#[tokio::test]
async fn a_revocation_that_cannot_be_recorded_is_503_not_a_silent_200() -> TestResult {
    // No API server here: the RevokedToken cannot be written, so every replica would
    // still accept the token. The caller is told to retry.
    let (router, _) = server()?;
    let mine = access_token(&router, CLIENT_ID).await?;
    let body = format!("token={mine}");
    let a = send(
        &router,
        post_form("/revoke", Some(&basic(CLIENT_ID, SECRET)), &body)?,
    )
    .await?;
    expect_error(&a, 503, r#"{"error":"temporarily_unavailable"}"#)?;
    expect_eq(a.header("retry-after"), Some("1"), "retry-after")
}

#[tokio::test]
async fn revocation_without_client_authentication_is_invalid_client() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, post_form("/revoke", None, "token=x")?).await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    expect_eq(
        a.header("www-authenticate"),
        Some(BASIC_CHALLENGE),
        "challenge",
    )
}

// --- /register (RFC 7591, RFC 7592), up to where it needs the API server ---------------

fn register(auth: Option<&str>, content_type: &str, body: &str) -> Result<Request<Body>, String> {
    let mut req = Request::post("/register").header("content-type", content_type);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.body(Body::from(body.to_string()))
        .map_err(|e| e.to_string())
}

const BEARER_CHALLENGE: &str = "Bearer error=\"invalid_token\"";

#[tokio::test]
async fn registration_without_or_with_a_wrong_initial_access_token_is_invalid_token() -> TestResult
{
    let (router, _) = server()?;
    for auth in [None, Some("Bearer tid.wrong"), Some("Bearer nodot")] {
        let a = send(&router, register(auth, "application/json", "{}")?).await?;
        expect_error(&a, 401, r#"{"error":"invalid_token"}"#)
            .map_err(|e| format!("{auth:?}: {e}"))?;
        expect_eq(
            a.header("www-authenticate"),
            Some(BEARER_CHALLENGE),
            "challenge",
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn registration_checks_the_token_before_the_body() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, register(None, "text/plain", "x")?).await?;
    expect_error(&a, 401, r#"{"error":"invalid_token"}"#)?;
    let bearer = format!("Bearer {IAT}");
    let a = send(&router, register(Some(&bearer), "text/plain", "x")?).await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_client_metadata","error_description":"the body must be application/json"}"#,
    )?;
    let a = send(&router, register(Some(&bearer), "application/json", "[1]")?).await?;
    expect_error(
        &a,
        400,
        r#"{"error":"invalid_client_metadata","error_description":"the body is not a JSON object of client metadata"}"#,
    )
}

#[tokio::test]
async fn a_valid_registration_without_an_api_server_is_server_error() -> TestResult {
    let (router, _) = server()?;
    let bearer = format!("Bearer {IAT}");
    let body = r#"{"grant_types":["client_credentials"]}"#;
    let a = send(&router, register(Some(&bearer), "application/json", body)?).await?;
    expect_error(&a, 500, r#"{"error":"server_error"}"#)
}

fn configuration(method: &str, path: &str, auth: Option<&str>) -> Result<Request<Body>, String> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.body(Body::empty()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_configuration_endpoint_needs_the_clients_registration_access_token() -> TestResult {
    let (router, _) = server()?;
    let path = format!("/register/{REGISTERED}");
    let theirs = format!("Bearer {ACCESS_TOKEN}");
    for (method, path, auth) in [
        ("GET", path.as_str(), None),
        ("GET", path.as_str(), Some("Bearer wrong")),
        ("DELETE", path.as_str(), Some("Bearer wrong")),
        // Another client's path with this client's token.
        ("GET", "/register/fuzz-client", Some(theirs.as_str())),
        // A path that does not decode names no client.
        ("GET", "/register/%FF", Some(theirs.as_str())),
    ] {
        let a = send(&router, configuration(method, path, auth)?).await?;
        expect_error(&a, 401, r#"{"error":"invalid_token"}"#)
            .map_err(|e| format!("{method} {path} {auth:?}: {e}"))?;
    }
    // The right token gets past authentication, to the API server this router has not.
    let a = send(&router, configuration("GET", &path, Some(&theirs))?).await?;
    expect_error(&a, 500, r#"{"error":"server_error"}"#)
}

// --- Discovery, keys, health ------------------------------------------------------------

#[tokio::test]
async fn discovery_lists_the_endpoints_and_the_key_algorithms() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, get("/.well-known/oauth-authorization-server")?).await?;
    expect_eq(a.status, 200, "status")?;
    let v = a.json();
    expect_eq(v["issuer"].as_str(), Some(ISSUER), "issuer")?;
    for (field, path) in [
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
        ("registration_endpoint", "/register"),
        ("authorization_endpoint", "/authorize"),
        ("userinfo_endpoint", "/userinfo"),
    ] {
        expect_eq(
            v[field].as_str().map(str::to_string),
            Some(format!("{ISSUER}{path}")),
            field,
        )?;
    }
    expect_eq(
        v["grant_types_supported"].clone(),
        serde_json::json!(["authorization_code", "client_credentials", "refresh_token"]),
        "grants",
    )?;
    expect_eq(
        v["token_endpoint_auth_methods_supported"].clone(),
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ]),
        "auth methods: public clients use none, with PKCE",
    )?;
    expect_eq(
        v["token_endpoint_auth_signing_alg_values_supported"].clone(),
        serde_json::json!([
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"
        ]),
        "assertion algorithms: asymmetric only",
    )?;
    expect_eq(
        v["introspection_endpoint_auth_methods_supported"].clone(),
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ]),
        "introspection needs client authentication",
    )?;
    expect_eq(
        v["access_token_signing_alg_values_supported"].clone(),
        serde_json::json!(["ES256"]),
        "algorithms",
    )?;
    let openid = send(&router, get("/.well-known/openid-configuration")?).await?;
    expect_eq(
        openid.body,
        a.body,
        "the OpenID path serves the same document",
    )
}

/// The claims of a JWT, unverified (the signature is another test's).
fn payload(jwt: &str) -> Result<serde_json::Value, String> {
    oauth_operator::auth::jws::unverified_claims(jwt)
        .map(serde_json::Value::Object)
        .ok_or_else(|| "not a JWT".to_string())
}

/// A token request with a client assertion, no other credentials.
async fn assertion_request(router: &Router, jwt: &str) -> Result<Answer, String> {
    token_request(
        router,
        None,
        &format!(
            "grant_type=client_credentials&client_assertion_type={JWT_BEARER}&client_assertion={jwt}"
        ),
    )
    .await
}

#[tokio::test]
async fn a_private_key_jwt_assertion_gets_a_token_once() -> TestResult {
    let (router, _) = server()?;
    let jwt = assertion(serde_json::json!({}));
    let a = assertion_request(&router, &jwt).await?;
    expect_eq(a.status, 200, "status")?;
    let token = a.json()["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_string();
    let claims = payload(&token)?;
    expect_eq(claims["sub"].as_str(), Some(KEYED), "sub")?;
    expect_eq(
        claims["client_auth_method"].as_str(),
        Some("private_key_jwt"),
        "how the client authenticated",
    )?;
    // The same assertion again: its jti was used.
    let again = assertion_request(&router, &jwt).await?;
    expect_error(&again, 401, r#"{"error":"invalid_client"}"#)?;
    // A secret client's token says so too.
    let secret = token_request(
        &router,
        None,
        &format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}"),
    )
    .await?;
    let token = secret.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let claims = payload(&token)?;
    expect_eq(
        claims["client_auth_method"].as_str(),
        Some("client_secret_post"),
        "a secret client",
    )
}

#[tokio::test]
async fn every_bad_assertion_is_the_same_invalid_client() -> TestResult {
    let (router, _) = server()?;
    let now = jiff::Timestamp::now().as_second();
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = serde_json::json!({
        "iss": KEYED, "sub": KEYED, "aud": format!("{ISSUER}/token"),
        "exp": now + 60, "jti": "unsigned"
    });
    let unsigned = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none"})),
        b64(claims.clone())
    );
    let hmac = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"public"),
    )
    .map_err(|e| e.to_string())?;
    let cases = [
        ("expired", assertion(serde_json::json!({"exp": now - 120}))),
        (
            "another audience",
            assertion(serde_json::json!({"aud": "https://elsewhere/token"})),
        ),
        (
            "valid for an hour",
            assertion(serde_json::json!({"exp": now + 3600})),
        ),
        ("no jti", assertion(serde_json::json!({"jti": null}))),
        (
            "another client's name",
            assertion(serde_json::json!({"sub": CLIENT_ID, "iss": CLIENT_ID})),
        ),
        ("alg none", unsigned),
        ("HMAC", hmac),
        ("not a JWT", "abc.def.ghi".into()),
    ];
    for (what, jwt) in cases {
        let a = assertion_request(&router, &jwt).await?;
        expect_error(&a, 401, r#"{"error":"invalid_client"}"#)
            .map_err(|e| format!("{what}: {e}"))?;
    }
    // A secret client that has no keys, named by the form.
    let a = token_request(
        &router,
        None,
        &format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_assertion_type={JWT_BEARER}&client_assertion={}",
            assertion(serde_json::json!({"iss": CLIENT_ID, "sub": CLIENT_ID}))
        ),
    )
    .await?;
    expect_error(&a, 401, r#"{"error":"invalid_client"}"#)?;
    // Two methods at once is a malformed request, not a failed authentication.
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        &format!(
            "grant_type=client_credentials&client_assertion_type={JWT_BEARER}&client_assertion={}",
            assertion(serde_json::json!({}))
        ),
    )
    .await?;
    expect_eq(a.status, 400, "two methods")?;
    expect_eq(
        a.json()["error"].as_str(),
        Some("invalid_request"),
        "two methods",
    )
}

#[tokio::test]
async fn jwks_publishes_public_keys_only_and_may_be_cached() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, get("/jwks")?).await?;
    expect_eq(a.status, 200, "status")?;
    expect_eq(
        a.header("cache-control"),
        Some("public, max-age=60"),
        "cache-control",
    )?;
    let v = a.json();
    let keys = v["keys"].as_array().ok_or("no keys")?;
    expect(!keys.is_empty(), "at least one key")?;
    for k in keys {
        expect_eq(k["kty"].as_str(), Some("EC"), "kty")?;
        expect_eq(k["alg"].as_str(), Some("ES256"), "alg")?;
        expect(k["kid"].is_string(), "kid")?;
        expect(k.get("d").is_none(), "no private part")?;
    }
    Ok(())
}

#[tokio::test]
async fn jwks_before_the_keys_are_loaded_is_503() -> TestResult {
    let (router, _) = server_with(fixture::filled_index(false))?;
    expect_eq(send(&router, get("/jwks")?).await?.status, 503, "status")
}

#[tokio::test]
async fn ready_only_once_the_index_is_complete() -> TestResult {
    let (router, _) = server()?;
    let a = send(&router, get("/readyz")?).await?;
    expect_eq((a.status, &a.body[..]), (200, &b"ok"[..]), "filled")?;
    let (router, index) = server_with(Arc::new(Index::default()))?;
    let a = send(&router, get("/readyz")?).await?;
    expect_eq(
        (a.status, &a.body[..]),
        (503, &b"index not synced"[..]),
        "empty",
    )?;
    index.reset_verifiers(None, []);
    index.reset_token_verifiers(None, []);
    index.reset_service_accounts(None, []);
    index.reset_revoked([], 0);
    expect_eq(send(&router, get("/readyz")?).await?.status, 503, "no keys")?;
    let healthy = send(&router, get("/healthz")?).await?;
    expect_eq(healthy.status, 200, "alive while not ready")
}

// --- Tenancy: an OAuthResource decides who gets its audience (crate::tenancy) ------------

/// The one body of every `invalid_target`.
const INVALID_TARGET_BODY: &str = r#"{"error":"invalid_target","error_description":"the resource is unknown or not granted to this client; name one resource per request"}"#;

/// An `OAuthResource` in namespace `owner` claiming [`AUDIENCE`], declaring `read`,
/// `write` and role `admin`, granting the fixture's namespace `read` (and `admin` when
/// asked) when `grant` is set.
fn resource(
    owner: &str,
    name: &str,
    created: i64,
    grant: bool,
    admin: bool,
) -> oauth_operator::api::OAuthResource {
    let spec = serde_json::json!({
        "audience": AUDIENCE,
        "scopes": [{"name": "read"}, {"name": "write"}],
        "roles": [{"name": "admin"}],
        "access": if grant {
            serde_json::json!([{"namespace": fixture::NAMESPACE, "scopes": ["read"], "roles": if admin { vec!["admin"] } else { vec![] }}])
        } else {
            serde_json::json!([])
        },
    });
    let mut r = oauth_operator::api::OAuthResource::new(
        name,
        serde_json::from_value(spec).unwrap_or_else(|e| unreachable!("spec: {e}")),
    );
    r.metadata.namespace = Some(owner.into());
    r.metadata.uid = Some(format!("uid-{owner}-{name}"));
    r.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(created).unwrap_or_default(),
    ));
    r
}

/// The client's own `roles` ask for `admin` too.
fn ask_for_admin(index: &Index) {
    let mut v = fixture::verifier("main", CLIENT_ID, None);
    v.spec.roles = vec!["member".into(), "admin".into()];
    index.apply_verifier(&v);
}

#[tokio::test]
async fn a_granted_client_gets_exactly_the_granted_scopes_and_roles() -> TestResult {
    let (router, index) = server()?;
    ask_for_admin(&index);
    index.apply_resource(&resource("billing", "api", 1, true, false));
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    expect_eq(a.status, 200, "status")?;
    expect_eq(a.json()["scope"].as_str(), Some("read"), "scope")?;
    let token = a.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let claims = introspect(&router, &token).await?.json();
    expect_eq(claims["active"].as_bool(), Some(true), "active")?;
    expect_eq(
        claims["roles"].clone(),
        serde_json::json!(["member"]),
        "roles: admin is not granted",
    )?;
    expect_eq(claims["aud"].clone(), serde_json::json!([AUDIENCE]), "aud")?;
    // Asked for by name (RFC 8707), the same; a scope beyond the grant is invalid_scope.
    let body = format!(
        "grant_type=client_credentials&resource={}",
        urlencode(AUDIENCE)
    );
    let a = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), &body).await?;
    expect_eq(a.status, 200, "by resource")?;
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials&scope=write",
    )
    .await?;
    expect_error(&a, 400, r#"{"error":"invalid_scope"}"#)?;
    // The role granted too: now it is there.
    index.apply_resource(&resource("billing", "api", 1, true, true));
    let token = access_token(&router, CLIENT_ID).await?;
    let claims = introspect(&router, &token).await?.json();
    expect_eq(
        claims["roles"].clone(),
        serde_json::json!(["member", "admin"]),
        "roles",
    )
}

#[tokio::test]
async fn unknown_and_not_granted_targets_get_byte_identical_refusals() -> TestResult {
    let (router, index) = server()?;
    // Claimed, and not granted to the fixture's namespace.
    index.apply_resource(&resource("billing", "api", 1, false, false));
    let not_granted = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    let named = format!(
        "grant_type=client_credentials&resource={}",
        urlencode(AUDIENCE)
    );
    let not_granted_named = token_request(&router, Some(&basic(CLIENT_ID, SECRET)), &named).await?;
    let unknown = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials&resource=https%3A%2F%2Fnobody.test",
    )
    .await?;
    for (what, a) in [
        ("not granted", &not_granted),
        ("not granted, named", &not_granted_named),
        ("unknown", &unknown),
    ] {
        expect_error(a, 400, INVALID_TARGET_BODY).map_err(|e| format!("{what}: {e}"))?;
    }
    expect_eq(&not_granted.body, &unknown.body, "byte-identical bodies")
}

#[tokio::test]
async fn withdrawing_a_grant_makes_its_tokens_inactive() -> TestResult {
    let (router, index) = server()?;
    index.apply_resource(&resource("billing", "api", 1, true, false));
    let token = access_token(&router, CLIENT_ID).await?;
    expect_eq(
        introspect(&router, &token).await?.json()["active"].as_bool(),
        Some(true),
        "before",
    )?;
    index.apply_resource(&resource("billing", "api", 1, false, false));
    expect_eq(
        introspect(&router, &token).await?.json()["active"].as_bool(),
        Some(false),
        "after the grant is withdrawn",
    )?;
    // A token issued before anyone claimed the audience is judged as the claim stands now.
    index.delete_resource("billing", "api");
    let legacy = access_token(&router, CLIENT_ID).await?;
    index.apply_resource(&resource("billing", "api", 1, false, false));
    expect_eq(
        introspect(&router, &legacy).await?.json()["active"].as_bool(),
        Some(false),
        "a legacy token once the audience is claimed",
    )
}

#[tokio::test]
async fn the_older_claim_holds_and_hands_over_when_it_goes() -> TestResult {
    let (router, index) = server()?;
    // The squatter is younger: its grant counts for nothing.
    index.apply_resource(&resource("owner", "api", 1, false, false));
    index.apply_resource(&resource("squatter", "api", 2, true, false));
    let a = token_request(
        &router,
        Some(&basic(CLIENT_ID, SECRET)),
        "grant_type=client_credentials",
    )
    .await?;
    expect_error(&a, 400, INVALID_TARGET_BODY)?;
    index.delete_resource("owner", "api");
    access_token(&router, CLIENT_ID).await.map(|_| ())
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_namespace_selector_grants_the_clients_of_the_namespaces_it_matches() -> TestResult {
    let (router, index) = server()?;
    let mut r = resource("billing", "api", 1, false, false);
    r.spec.access = vec![
        serde_json::from_value(serde_json::json!({
            "namespaceSelector": {"matchLabels": {"tenant": "true"}},
            "scopes": ["read"],
        }))
        .map_err(|e| e.to_string())?,
    ];
    index.apply_resource(&r);
    let auth = basic(CLIENT_ID, SECRET);
    let ask = || token_request(&router, Some(&auth), "grant_type=client_credentials");
    expect_error(&ask().await?, 400, INVALID_TARGET_BODY)?;
    index.apply_namespace(
        fixture::NAMESPACE,
        [("tenant".to_string(), "true".to_string())].into(),
    );
    let a = ask().await?;
    expect_eq(a.status, 200, "granted once the namespace is labelled")?;
    expect_eq(a.json()["scope"].as_str(), Some("read"), "scope")?;
    index.apply_namespace(fixture::NAMESPACE, Default::default());
    expect_error(&ask().await?, 400, INVALID_TARGET_BODY)
}
