//! Property-based fuzzing of the token server's request parsing, through the real router
//! (`/token` with both grants, `/introspect`, `/revoke`, `/register`, `/register/{id}`,
//! `/authorize` and its sign-in form, the upstream sign-in and its callback, `/userinfo`),
//! and of the conversion from the internal CRDs to the index. No cluster: the index is filled by
//! hand with a client, a registered client and an initial access token whose credentials
//! the generators know, so that many cases get past authentication into the deeper parsing.
//!
//! `cargo test --test fuzz` runs 256 cases per property. A long run (about 5 minutes):
//! `hack/fuzz.sh` (PROPTEST_CASES=150000, release build). A panic anywhere fails the case
//! and proptest shrinks it to a minimal request.

mod fixture;

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;

use fixture::{
    ACCESS_TOKEN, AUDIENCE, CLIENT_ID, IAT, KEYED, PASSWORD, PUBLIC_APP, REDIRECT, REGISTERED,
    SECRET, USER, basic,
};

/// `client_assertion_type` of RFC 7523, as it is before form-encoding.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The public JWK Set of the fixture's keyed client.
fn client_jwks() -> serde_json::Value {
    fixture::CLIENT_KEYS
        .as_ref()
        .and_then(|k| serde_json::to_value(&k.jwks).ok())
        .unwrap_or_default()
}

/// A PKCE pair the generators use (RFC 7636 appendix B).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
use oauth_operator::api::{InitialAccessTokenVerifier, OAuthClientVerifier};
use oauth_operator::index::Index;

/// The filled index, with an `OAuthResource` claiming the fixture's audience and granting
/// its namespace `read`, so requests reach the audience decision's every branch.
static ROUTER: LazyLock<Option<axum::Router>> = LazyLock::new(|| {
    let index = fixture::filled_index(true);
    let resource = serde_json::json!({
        "apiVersion": "oauth-operator.dev/v1alpha1",
        "kind": "OAuthResource",
        "metadata": {"name": "api", "namespace": "owner", "uid": "u-api", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "audience": AUDIENCE,
            "scopes": [{"name": "read"}, {"name": "write"}],
            "roles": [{"name": "admin"}],
            "access": [{"namespace": fixture::NAMESPACE, "scopes": ["read"]}],
            "users": [{"groups": ["ops"], "roles": ["admin"]}],
        }
    });
    index.apply_resource(&serde_json::from_value(resource).ok()?);
    fixture::router(index)
});

static RUNTIME: LazyLock<Option<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ok()
});

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(basic(CLIENT_ID, SECRET))),
        Just(Some(basic(CLIENT_ID, "wrong"))),
        Just(Some(format!("Bearer {IAT}"))),
        Just(Some(format!("Bearer {ACCESS_TOKEN}"))),
        "[ -~]{0,80}".prop_map(Some),
        ("[ -~]{0,30}", "[ -~]{0,30}").prop_map(|(a, b)| Some(basic(&a, &b))),
        "[ -~]{0,60}".prop_map(|t| Some(format!("Bearer {t}"))),
    ]
}

fn form_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("client_credentials".to_string()),
        Just(CLIENT_ID.to_string()),
        Just(SECRET.to_string()),
        Just("read write".to_string()),
        Just("access_token".to_string()),
        Just("authorization_code".to_string()),
        Just("refresh_token".to_string()),
        Just(PUBLIC_APP.to_string()),
        Just(REDIRECT.to_string()),
        Just(VERIFIER.to_string()),
        Just(USER.to_string()),
        Just(PASSWORD.to_string()),
        Just(ASSERTION_TYPE.to_string()),
        Just(KEYED.to_string()),
        // Targets (RFC 8707): the claimed audience, written otherwise, unknown, malformed.
        Just(AUDIENCE.to_string()),
        Just("HTTPS://API.EXAMPLE.TEST:443/".to_string()),
        Just("https://nobody.test#frag".to_string()),
        Just("urn:x".to_string()),
        // A genuine assertion (accepted once, replayed after) and JWT-shaped junk.
        Just(fixture::assertion(serde_json::json!({}))),
        Just(fixture::assertion(
            serde_json::json!({"aud": "elsewhere", "exp": "soon"})
        )),
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,60}",
        "[A-Za-z0-9_-]{20,200}",
        "\\PC{0,40}",
    ]
}

/// An authorization request's query: often well formed enough to reach the deep checks.
fn authorize_query() -> impl Strategy<Value = String> {
    let keys = prop_oneof![
        Just("response_type"),
        Just("client_id"),
        Just("redirect_uri"),
        Just("state"),
        Just("scope"),
        Just("code_challenge"),
        Just("code_challenge_method"),
        Just("nonce"),
        Just("prompt"),
        Just("max_age"),
        Just("request"),
        Just("response_mode"),
        Just("resource"),
        Just("audience"),
    ];
    let values = prop_oneof![
        Just("code".to_string()),
        Just("token".to_string()),
        Just(PUBLIC_APP.to_string()),
        Just(REDIRECT.to_string()),
        Just("http://127.0.0.1:9/cb".to_string()),
        Just(CHALLENGE.to_string()),
        Just("S256".to_string()),
        Just("plain".to_string()),
        Just("openid profile email groups".to_string()),
        Just("none".to_string()),
        Just(AUDIENCE.to_string()),
        Just("https://nobody.test/".to_string()),
        "\\PC{0,600}",
    ];
    (
        proptest::collection::vec((keys, values), 0..10),
        any::<bool>(),
    )
        .prop_map(|(pairs, base)| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            if base {
                s.append_pair("response_type", "code");
                s.append_pair("client_id", PUBLIC_APP);
                s.append_pair("redirect_uri", REDIRECT);
            }
            for (k, v) in pairs {
                s.append_pair(k, &v);
            }
            format!("/authorize?{}", s.finish())
        })
}

fn body() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    let keys = prop_oneof![
        Just("grant_type"),
        Just("client_id"),
        Just("client_secret"),
        Just("scope"),
        Just("audience"),
        Just("resource"),
        Just("token"),
        Just("token_type_hint"),
        Just("code"),
        Just("redirect_uri"),
        Just("code_verifier"),
        Just("request"),
        Just("username"),
        Just("password"),
        Just("refresh_token"),
        Just("post_logout_redirect_uri"),
        Just("id_token_hint"),
        Just("client_assertion"),
        Just("client_assertion_type"),
        Just("x"),
    ];
    let form = proptest::collection::vec((keys, form_value()), 0..6).prop_map(|pairs| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, &v);
        }
        (
            Some("application/x-www-form-urlencoded".to_string()),
            s.finish().into_bytes(),
        )
    });
    let json_value = prop_oneof![
        Just(serde_json::json!(["client_credentials"])),
        Just(serde_json::json!("read")),
        Just(serde_json::json!([
            "https://app.test/cb",
            "http://localhost/cb#x"
        ])),
        Just(serde_json::json!("none")),
        Just(serde_json::json!("private_key_jwt")),
        Just(client_jwks()),
        Just(serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
        Just(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "", "y": ""}]})),
        Just(serde_json::json!(null)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "\\PC{0,40}".prop_map(|s| serde_json::json!(s)),
        proptest::collection::vec("\\PC{0,20}", 0..4).prop_map(|v| serde_json::json!(v)),
    ];
    let field = prop_oneof![
        Just("client_name"),
        Just("grant_types"),
        Just("scope"),
        Just("redirect_uris"),
        Just("token_endpoint_auth_method"),
        Just("jwks"),
        Just("jwks_uri"),
        Just("client_id"),
        Just("software_id"),
    ];
    let json = proptest::collection::btree_map(field, json_value, 0..6).prop_map(|m| {
        (
            Some("application/json".to_string()),
            serde_json::to_vec(&m).unwrap_or_default(),
        )
    });
    let raw = (
        proptest::option::of("[ -~]{0,60}"),
        proptest::collection::vec(any::<u8>(), 0..300),
    );
    prop_oneof![form, json, raw]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/token".to_string()),
        Just("/introspect".to_string()),
        Just("/revoke".to_string()),
        Just("/register".to_string()),
        Just(format!("/register/{REGISTERED}")),
        Just(format!("/register/{CLIENT_ID}")),
        "/register/[a-zA-Z0-9%._-]{0,20}".prop_map(|s| s),
        Just("/.well-known/oauth-authorization-server".to_string()),
        Just("/jwks".to_string()),
        authorize_query(),
        Just("/authorize/login".to_string()),
        // Sign-in through an upstream provider: the start link and the provider's
        // callback, with and without the parameters they take.
        "/authorize/upstream/[a-zA-Z0-9%._-]{0,20}(\\?request=[A-Za-z0-9_-]{0,24})?"
            .prop_map(|s| s),
        "/authorize/callback(\\?(code|state|iss|error)=[A-Za-z0-9%_-]{0,24}(&(code|state|iss)=[A-Za-z0-9%_-]{0,24}){0,3})?"
            .prop_map(|s| s),
        Just("/userinfo".to_string()),
        Just("/logout".to_string()),
        "/logout\\?(id_token_hint|post_logout_redirect_uri|client_id|state)=[ -~]{0,80}"
            .prop_map(|s| s.replace(' ', "+")),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("POST"),
        Just("GET"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH")
    ]
}

/// The statuses any request may get; everything else (a 500 from a panic or an
/// unexpected failure, say) is a finding.
fn acceptable(path: &str, status: StatusCode) -> bool {
    match status.as_u16() {
        200 | 201 | 204 | 400 | 401 | 404 | 405 | 413 | 415 | 503 => true,
        // The authorization endpoint answers the client by redirecting to it.
        303 => path.starts_with("/authorize") || path.starts_with("/logout"),
        // Registration past authentication needs the API server, which this router
        // has not got: `server_error` is its honest answer here.
        500 => path.starts_with("/register"),
        // An upstream provider that cannot be reached or answers badly.
        502 => path.starts_with("/authorize/upstream/") || path.starts_with("/authorize/callback"),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_request_gets_a_well_formed_answer(
        method in method(),
        path in path(),
        auth in authorization(),
        (content_type, body) in body(),
    ) {
        let mut req = Request::builder().method(method).uri(&path);
        if let Some(a) = &auth {
            req = req.header("authorization", a.as_str());
        }
        if let Some(ct) = &content_type {
            req = req.header("content-type", ct.as_str());
        }
        let Ok(mut req) = req.body(Body::from(body)) else {
            // A header value the http crate itself refuses never reaches a server.
            return Ok(());
        };
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let router = ROUTER.clone().ok_or_else(|| TestCaseError::fail("no router"))?;
        let runtime = RUNTIME.as_ref().ok_or_else(|| TestCaseError::fail("no runtime"))?;
        let (status, content_type, bytes) = runtime.block_on(async move {
            let res = router.oneshot(req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, ct, bytes))
        }).map_err(TestCaseError::fail)?;
        prop_assert!(acceptable(&path, status), "{method} {path}: {status}");
        // OAuth endpoints answer their errors as RFC 6749 / 7591 JSON.
        let oauth = ["/token", "/introspect", "/revoke", "/register"].iter().any(|p| path.starts_with(p));
        if oauth && (status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED) && !bytes.is_empty() {
            prop_assert!(content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{method} {path}: {status} {content_type:?}");
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(v["error"].is_string(), "{v}");
        }
        // Nothing the server says contains a secret it holds.
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(!text.contains(SECRET) && !text.contains(ACCESS_TOKEN) && !text.contains(IAT));
        prop_assert!(!text.contains(PASSWORD), "a password is never echoed");
        prop_assert!(!text.contains("$argon2") && !text.contains("$sha256"));
    }

    /// An `OAuthResource` as the API server could hand it over, whatever it holds (the
    /// schema and CEL bypassed): the table takes it or ignores it, the decision never
    /// panics and never grants what the resource does not declare.
    #[test]
    fn any_resource_object_is_decided_safely(json in resource_json(), scope in proptest::option::of(proptest::collection::vec("\\PC{0,12}", 0..3))) {
        use oauth_operator::tenancy::{self, Asker, Flow, Mode, Request, Settings};
        let Ok(r) = serde_json::from_value::<oauth_operator::api::OAuthResource>(json) else {
            return Ok(());
        };
        let Some(entry) = tenancy::ResourceEntry::from_resource(&r) else { return Ok(()) };
        let audience = entry.audience.clone();
        let declared = entry.scopes.clone();
        let table = tenancy::Resources::build([entry]);
        let audiences = vec![audience.clone()];
        let scopes: Vec<String> = ["read", "write", "admin"].map(String::from).to_vec();
        let roles = vec!["member".to_string(), "admin".to_string()];
        let labels = std::collections::BTreeMap::from([("app".to_string(), "x".to_string())]);
        let reserved = |_: &str| false;
        for mode in [Mode::Off, Mode::Warn, Mode::Enforce] {
            let keys: Vec<String> = audiences.iter().map(|a| tenancy::normalize(a)).collect();
            let asker = Asker { client_id: "c", namespace: "fuzz", labels: &labels, namespace_labels: Some(&labels), audiences: &audiences, audience_keys: &keys, scopes: &scopes, roles: &roles, lifetime: 600 };
            let settings = Settings { mode, default_audience: "https://default.test", default_key: "https://default.test", default_role: "member", reserved: &reserved };
            for targets in [None, Some(std::slice::from_ref(&audience))] {
                let request = Request { targets, scope: scope.as_deref(), flow: Flow::Client };
                if let Ok(d) = tenancy::decide(&asker, &table, &settings, &request)
                    && d.resource.is_some()
                {
                    prop_assert!(d.scope.iter().all(|s| declared.contains(s)), "{d:?}");
                    prop_assert!(d.lifetime <= 600);
                }
            }
        }
    }

    /// The internal CRD as the API server could hand it over, whatever it holds: the index
    /// takes it or ignores it, never panics, and serves what it took.
    #[test]
    fn any_verifier_object_converts_or_is_ignored(json in verifier_json()) {
        let index = Index::default();
        if let Ok(v) = serde_json::from_value::<OAuthClientVerifier>(json) {
            index.apply_verifier(&v);
            if let (Some(entry), Some(_)) = (index.client(&v.spec.client_id), &v.metadata.namespace) {
                prop_assert_eq!(&entry.client_id, &v.spec.client_id);
                prop_assert_eq!(entry.secrets.len(), v.spec.secrets.len());
            }
            index.reset_verifiers(None, [&v]);
            index.delete_verifier("fuzz", v.metadata.name.as_deref().unwrap_or_default());
            prop_assert!(index.client(&v.spec.client_id).is_none() || v.metadata.namespace.as_deref() != Some("fuzz"));
        }
        if let Ok(v) = serde_json::from_value::<InitialAccessTokenVerifier>(verifier_json_iat()) {
            index.apply_token_verifier(&v);
        }
    }
}

fn resource_json() -> impl Strategy<Value = serde_json::Value> {
    let s = "\\PC{0,16}";
    let names = proptest::collection::vec(
        prop_oneof![
            Just("read".to_string()),
            Just("admin".to_string()),
            s.prop_map(String::from)
        ],
        0..3,
    );
    let selector = proptest::option::of(prop_oneof![
        Just(serde_json::json!({"matchLabels": {"app": "x"}})),
        Just(serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Near"}]})),
        Just(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]})
        ),
    ]);
    let access = proptest::collection::vec(
        (
            proptest::option::of(prop_oneof![Just("fuzz"), Just("other")]),
            selector.clone(),
            names.clone(),
            names.clone(),
            proptest::collection::vec(
                prop_oneof![
                    Just("c".to_string()),
                    Just("C".to_string()),
                    s.prop_map(String::from)
                ],
                0..2,
            ),
            selector,
        ),
        0..3,
    );
    (
        prop_oneof![Just("https://api.test".to_string()), Just("HTTPS://API.test:443/".to_string()), s.prop_map(String::from)],
        names.clone(),
        names,
        access,
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(audience, scopes, roles, access, max)| {
            serde_json::json!({
                "apiVersion": "oauth-operator.dev/v1alpha1",
                "kind": "OAuthResource",
                "metadata": {"name": "r", "namespace": "owner", "uid": "u"},
                "spec": {
                    "audience": audience,
                    "scopes": scopes.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>(),
                    "roles": roles.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>(),
                    "maxAccessTokenLifetimeSeconds": max,
                    "access": access.iter().map(|(ns, sel, sc, ro, ids, ns_sel)| serde_json::json!({
                        "namespace": ns, "clientSelector": sel, "scopes": sc, "roles": ro, "clientIds": ids, "namespaceSelector": ns_sel,
                    })).collect::<Vec<_>>(),
                }
            })
        })
}

fn verifier_json() -> impl Strategy<Value = serde_json::Value> {
    let s = "\\PC{0,24}";
    (
        s,
        s,
        proptest::option::of(Just("fuzz")),
        any::<bool>(),
        proptest::collection::vec(s, 0..4),
        any::<u32>(),
        proptest::collection::vec((s, s, proptest::option::of(any::<i32>())), 0..4),
        proptest::option::of("\\PC{0,30}"),
        proptest::option::of(prop_oneof![
            Just(client_jwks().to_string()),
            "\\PC{0,60}",
        ]),
    )
        .prop_map(|(name, id, ns, active, scopes, lifetime, secrets, nb, jwks)| {
            serde_json::json!({
                "apiVersion": "oauth-operator.dev/v1alpha1",
                "kind": "OAuthClientVerifier",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "clientId": id,
                    "active": active,
                    "notBefore": nb,
                    "scopes": scopes,
                    "accessTokenLifetimeSeconds": lifetime,
                    "jwks": jwks,
                    "secrets": secrets.iter().map(|(n, h, exp)| serde_json::json!({
                        "name": n,
                        "hash": h,
                        "sha256": h,
                        "source": {"secretName": "s", "key": "k", "uid": "u", "version": "1"},
                        "expiresAt": exp.map(|e| jiff::Timestamp::from_second(i64::from(e)).map(|t| t.to_string()).unwrap_or_default()),
                    })).collect::<Vec<_>>(),
                }
            })
        })
}

fn verifier_json_iat() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "oauth-operator.dev/v1alpha1",
        "kind": "InitialAccessTokenVerifier",
        "metadata": {"name": "x", "namespace": "fuzz"},
        "spec": {"tokenId": "", "hash": "", "sha256": "", "source": {"secretName": "s", "key": "k", "uid": "u", "version": "1"}, "expiresAt": "1970-01-01T00:00:00Z"}
    })
}
