//! Tenant-safe tokens on the real control plane: an API's team claims its audience with an
//! `OAuthResource` and grants it; clients of three namespaces (the API owner's, a granted
//! caller's, an outsider's) get exactly what is granted, the outsider nothing, with one
//! refusal for unknown and not-granted targets; a withdrawn grant ends the tokens; two
//! claims of one audience (the older holds, the younger is told, and takes over); the
//! installation's mode for audiences nobody claims; and the API server's refusals of
//! resources that cannot be honoured.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams};
use oauth_operator::api::{AudienceState, OAuthClient, OAuthResource};

use crate::browser::{Browser, CallbackServer};
use crate::support::{Ctx, Server, TestFn, condition_message, eventually, metric, verify_token};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "an_api_owner_decides_which_namespaces_get_its_audience_scopes_and_roles",
            |c| Box::pin(three_namespaces(c)),
        ),
        ("the_older_claim_of_an_audience_holds_and_hands_over", |c| {
            Box::pin(two_claims(c))
        }),
        (
            "unclaimed_audiences_are_served_and_reported_in_warn_and_refused_in_enforce",
            |c| Box::pin(modes(c)),
        ),
        (
            "resources_that_cannot_be_honoured_are_refused_with_the_field",
            |c| Box::pin(bad_resources(c)),
        ),
        (
            "a_signed_in_user_gets_the_resource_roles_and_a_withdrawn_grant_ends_the_refresh",
            |c| Box::pin(sign_in(c)),
        ),
        (
            "a_policy_in_enforce_refuses_what_is_outside_it_and_in_warn_serves_and_reports",
            |c| Box::pin(policies(c)),
        ),
        (
            "clients_with_audiences_upgrade_to_warn_under_load_with_no_refused_request",
            |c| Box::pin(upgrade(c)),
        ),
        (
            "a_namespace_selector_grants_the_namespaces_whose_labels_match",
            |c| Box::pin(namespace_selector(c)),
        ),
    ]
}

const API: &str = "https://payments.example.test";
const WAIT: Duration = Duration::from_secs(30);

/// A namespace beside the test's, deleted when dropped.
struct Extra {
    client: kube::Client,
    name: String,
}

impl Extra {
    async fn create(ctx: &Ctx, suffix: &str) -> anyhow::Result<Extra> {
        let name = format!("{}-{suffix}", ctx.ns);
        crate::support::create_namespace(&ctx.client, &name).await?;
        Ok(Extra {
            client: ctx.client.clone(),
            name,
        })
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        tokio::spawn(async move {
            let _ = Api::<Namespace>::all(client)
                .delete(&name, &DeleteParams::background())
                .await;
        });
    }
}

/// An OAuthClient (its client id its name), for `Ctx::apply_in` its namespace.
fn client_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\nspec:\n  clientId: {name}\n{spec}\n---\n"
    )
}

/// An OAuthResource, for `Ctx::apply_in` its namespace.
fn resource_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthResource\nmetadata:\n  name: {name}\nspec:\n{spec}\n---\n"
    )
}

/// What every client of these tests asks for: the payments API, its two scopes, its role.
const ASKS: &str = "  audiences: [\"https://payments.example.test\"]\n  scopes: [payments.read, payments.admin]\n  roles: [payments-admin]";

/// The payments API, granting `payments.read` to `caller` (and, when
/// `admin`, `payments.admin` and the role to its own namespace).
fn payments(caller: Option<&str>) -> String {
    let access = match caller {
        Some(c) => format!(
            "  access:\n  - namespace: {c}\n    scopes: [payments.read]\n  - scopes: [payments.read, payments.admin]\n    roles: [payments-admin]\n"
        ),
        None => {
            "  access:\n  - scopes: [payments.read, payments.admin]\n    roles: [payments-admin]\n"
                .to_string()
        }
    };
    resource_yaml(
        "payments",
        &format!(
            "  audience: {API}\n  scopes:\n  - name: payments.read\n  - name: payments.admin\n    description: Refunds\n  roles:\n  - name: payments-admin\n{access}"
        ),
    )
}

async fn wait_client(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<OAuthClient> {
    let api: Api<OAuthClient> = Api::namespaced(client.clone(), ns);
    eventually(
        Duration::from_secs(60),
        &format!("{ns}/{name} Ready"),
        || async {
            let c = api.get(name).await?;
            let ready = c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            ensure!(ready, "not ready: {:?}", c.status);
            Ok(c)
        },
    )
    .await
}

/// Waits until `ns/name`'s `AudiencesGranted` has `status` and `reason`.
async fn wait_granted(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<OAuthClient> {
    wait_condition(client, ns, name, "AudiencesGranted", status, reason).await
}

/// Waits until `ns/name`'s condition `type_` has `status` and `reason`; the client then.
async fn wait_condition(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<OAuthClient> {
    let api: Api<OAuthClient> = Api::namespaced(client.clone(), ns);
    eventually(
        WAIT,
        &format!("{ns}/{name} {type_}={status} {reason}"),
        || async {
            let c = api.get(name).await?;
            let cond = c
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.type_ == type_)
                .cloned();
            ensure!(
                cond.as_ref()
                    .is_some_and(|c| c.status == status && c.reason == reason),
                "now: {cond:?}; the status: {:?}",
                c.status
            );
            Ok(c)
        },
    )
    .await
}

async fn credentials(ctx: &Ctx, ns: &str, name: &str) -> anyhow::Result<String> {
    let s: Secret = Api::namespaced(ctx.client.clone(), ns)
        .get(&format!("{name}-credentials"))
        .await?;
    let v = s
        .data
        .and_then(|d| d.get("client_secret").cloned())
        .context("client_secret")?;
    let secret = String::from_utf8(v.0)?;
    ctx.secret(&format!("client secret of {ns}/{name}"), &secret);
    Ok(secret)
}

/// A client-credentials request of `id` with `extra` parameters.
async fn request(
    ctx: &Ctx,
    server: &Server,
    id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let (code, _, body) = server.token(&ctx.http, Some((id, secret)), &form).await?;
    if let Some(t) = body["access_token"].as_str() {
        ctx.secret("access token", t);
    }
    Ok((code, body))
}

async fn introspect(
    ctx: &Ctx,
    server: &Server,
    id: &str,
    secret: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(ctx
        .http
        .post(format!("{}/introspect", server.url))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await?
        .json()
        .await?)
}

async fn resource_condition(
    ctx: &Ctx,
    ns: &str,
    name: &str,
) -> anyhow::Result<(String, String, String, Option<u32>)> {
    let r: OAuthResource = Api::namespaced(ctx.client.clone(), ns).get(name).await?;
    let status = r.status.unwrap_or_default();
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .context("no Accepted condition yet")?;
    Ok((
        c.status.clone(),
        c.reason.clone(),
        c.message.clone(),
        status.granted_clients,
    ))
}

async fn three_namespaces(ctx: Ctx) -> anyhow::Result<()> {
    let caller = Extra::create(&ctx, "caller").await?;
    let outsider = Extra::create(&ctx, "out").await?;
    let watch = [
        format!("--namespace={}", caller.name),
        format!("--namespace={}", outsider.name),
    ];
    let watch: Vec<&str> = watch.iter().map(String::as_str).collect();
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let _controller = ctx.start_controller_with(&issuer, &watch)?;
    let server = ctx.start_server_with(port, &watch).await?;
    let owner = ctx.ns.as_str();

    ctx.apply(&format!(
        "{}{}",
        payments(Some(&caller.name)),
        client_yaml("ledger", ASKS)
    ))?;
    ctx.apply_in(&caller.name, &client_yaml("checkout", ASKS))?;
    ctx.apply_in(&outsider.name, &client_yaml("intruder", ASKS))?;
    eventually(WAIT, "payments Accepted with 2 clients", || async {
        let (status, reason, _, granted) = resource_condition(&ctx, owner, "payments").await?;
        ensure!(
            (status.as_str(), reason.as_str(), granted) == ("True", "Claimed", Some(2)),
            "{status} {reason} {granted:?}"
        );
        Ok(())
    })
    .await?;
    for (ns, name) in [
        (owner, "ledger"),
        (caller.name.as_str(), "checkout"),
        (outsider.name.as_str(), "intruder"),
    ] {
        wait_client(&ctx.client, ns, name).await?;
    }
    // Each team sees why, in its own namespace.
    let checkout = wait_granted(&ctx.client, &caller.name, "checkout", "True", "Granted").await?;
    let view = &checkout.status.as_ref().context("status")?.audiences;
    ensure!(
        view.len() == 1
            && view[0].state == AudienceState::Granted
            && view[0].scopes == ["payments.read"]
            && view[0].roles.is_empty(),
        "checkout's view: {view:?}"
    );
    let intruder = wait_granted(
        &ctx.client,
        &outsider.name,
        "intruder",
        "False",
        "NotGranted",
    )
    .await?;
    ensure!(
        intruder.status.as_ref().context("status")?.audiences[0].state == AudienceState::NotGranted,
        "intruder's view"
    );
    ensure!(
        !condition_message(&intruder, "AudiencesGranted").contains(owner),
        "the refusal names the owner's namespace to a team that cannot read it"
    );

    let ledger_secret = credentials(&ctx, owner, "ledger").await?;
    let checkout_secret = credentials(&ctx, &caller.name, "checkout").await?;
    let intruder_secret = credentials(&ctx, &outsider.name, "intruder").await?;

    // The owner's own client: everything it granted itself.
    let (code, body) = request(&ctx, &server, "ledger", &ledger_secret, &[]).await?;
    ensure!(code == 200, "ledger: {code} {body}");
    let claims = verify_token(
        &ctx.http,
        &server,
        body["access_token"].as_str().context("token")?,
        API,
    )
    .await?;
    ensure!(
        claims.scope.as_deref() == Some("payments.read payments.admin")
            && claims.roles == ["member", "payments-admin"],
        "ledger's claims: {:?} {:?}",
        claims.scope,
        claims.roles
    );

    // The granted caller: exactly the granted scope, no role it was not granted.
    let (code, body) = request(&ctx, &server, "checkout", &checkout_secret, &[]).await?;
    ensure!(code == 200, "checkout: {code} {body}");
    let checkout_token = body["access_token"].as_str().context("token")?.to_string();
    let claims = verify_token(&ctx.http, &server, &checkout_token, API).await?;
    ensure!(
        claims.scope.as_deref() == Some("payments.read")
            && claims.roles == ["member"]
            && claims.aud == [API],
        "checkout's claims: {:?} {:?} {:?}",
        claims.scope,
        claims.roles,
        claims.aud
    );
    let (code, body) = request(
        &ctx,
        &server,
        "checkout",
        &checkout_secret,
        &[("scope", "payments.admin")],
    )
    .await?;
    ensure!(
        code == 400 && body["error"] == "invalid_scope",
        "checkout asking for payments.admin: {code} {body}"
    );
    let (code, _) = request(
        &ctx,
        &server,
        "checkout",
        &checkout_secret,
        &[("resource", API)],
    )
    .await?;
    ensure!(code == 200, "checkout naming the resource: {code}");

    // The outsider: the audience, the scope and the role are all refused, and an unknown
    // resource looks exactly the same.
    let mut bodies = Vec::new();
    for extra in [
        vec![],
        vec![("resource", API)],
        vec![("audience", API)],
        vec![("scope", "payments.admin")],
        vec![("resource", "https://nothing-here.example.test")],
    ] {
        let res = ctx
            .http
            .post(format!("{}/token", server.url))
            .basic_auth("intruder", Some(&intruder_secret))
            .form(&[[("grant_type", "client_credentials")].as_slice(), &extra].concat())
            .send()
            .await?;
        ensure!(res.status() == 400, "intruder {extra:?}: {}", res.status());
        bodies.push((extra, res.bytes().await?));
    }
    let (first, rest) = bodies.split_first().context("bodies")?;
    ensure!(
        std::str::from_utf8(&first.1)?.contains("\"invalid_target\""),
        "the outsider's refusal: {:?}",
        first.1
    );
    for (extra, body) in rest {
        ensure!(
            *body == first.1,
            "byte-identical refusals: {extra:?} got {body:?}, the first {:?}",
            first.1
        );
    }

    // Withdrawing the grant: the caller's tokens introspect inactive within seconds, and it
    // gets no new one; its status says so.
    ensure!(
        introspect(&ctx, &server, "checkout", &checkout_secret, &checkout_token).await?["active"]
            == true,
        "active before"
    );
    ctx.apply(&payments(None))?;
    eventually(
        Duration::from_secs(10),
        "the token introspects inactive",
        || async {
            let answer =
                introspect(&ctx, &server, "checkout", &checkout_secret, &checkout_token).await?;
            ensure!(answer["active"] == false, "{answer}");
            Ok(())
        },
    )
    .await?;
    let (code, body) = request(&ctx, &server, "checkout", &checkout_secret, &[]).await?;
    ensure!(
        code == 400 && body["error"] == "invalid_target",
        "after the grant is withdrawn: {code} {body}"
    );
    wait_granted(&ctx.client, &caller.name, "checkout", "False", "NotGranted").await?;
    eventually(WAIT, "payments counts 1 client", || async {
        let (_, _, _, granted) = resource_condition(&ctx, owner, "payments").await?;
        // The count follows at the next pass, at the latest; a change of the resource
        // itself recounts at once.
        ensure!(granted == Some(1), "{granted:?}");
        Ok(())
    })
    .await?;
    // The owner's own keeps working.
    let (code, _) = request(&ctx, &server, "ledger", &ledger_secret, &[]).await?;
    ensure!(code == 200, "ledger after: {code}");
    Ok(())
}

async fn two_claims(ctx: Ctx) -> anyhow::Result<()> {
    let other = Extra::create(&ctx, "squat").await?;
    let watch = format!("--namespace={}", other.name);
    let port = envtest::free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let _controller = ctx.start_controller_with(&issuer, &[&watch])?;
    let server = ctx.start_server_with(port, &[&watch]).await?;
    let owner = ctx.ns.as_str();

    ctx.apply(&payments(None))?;
    eventually(WAIT, "the holder is accepted", || async {
        let (status, ..) = resource_condition(&ctx, owner, "payments").await?;
        ensure!(status == "True", "{status}");
        Ok(())
    })
    .await?;
    // Created after: the same audience written differently is the same claim.
    ctx.apply_in(&other.name, &format!(
        "{}{}",
        resource_yaml("payments",
            "  audience: HTTPS://Payments.Example.Test/\n  scopes:\n  - name: payments.read\n  access:\n  - scopes: [payments.read]\n"
        ),
        client_yaml("squatter-app", "  audiences: [\"https://payments.example.test\"]\n  scopes: [payments.read]"),
    ))?;
    let holder = format!("{owner}/payments");
    eventually(WAIT, "the younger claim is told who holds it", || async {
        let (status, reason, message, _) =
            resource_condition(&ctx, &other.name, "payments").await?;
        ensure!(
            status == "False" && reason == "AudienceConflict" && message.contains(&holder),
            "{status} {reason} {message}"
        );
        Ok(())
    })
    .await?;
    eventually(WAIT, "a Warning Event names the holder", || async {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(ctx.client.clone(), &other.name);
        let found = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("AudienceConflict")
                    && e.note.as_deref().is_some_and(|n| n.contains(&holder))
            });
        ensure!(found, "no AudienceConflict Event yet");
        Ok(())
    })
    .await?;
    // The squatter's grant to its own client counts for nothing; its status says why.
    wait_client(&ctx.client, &other.name, "squatter-app").await?;
    wait_granted(
        &ctx.client,
        &other.name,
        "squatter-app",
        "False",
        "NotGranted",
    )
    .await?;
    let secret = credentials(&ctx, &other.name, "squatter-app").await?;
    let (code, body) = request(&ctx, &server, "squatter-app", &secret, &[]).await?;
    ensure!(
        code == 400 && body["error"] == "invalid_target",
        "the squatter's client: {code} {body}"
    );

    // The holder goes: the next claim takes over, and its grant is honoured.
    Api::<OAuthResource>::namespaced(ctx.client.clone(), owner)
        .delete("payments", &DeleteParams::default())
        .await?;
    eventually(WAIT, "the younger claim takes over", || async {
        let (status, reason, ..) = resource_condition(&ctx, &other.name, "payments").await?;
        ensure!(status == "True" && reason == "Claimed", "{status} {reason}");
        Ok(())
    })
    .await?;
    eventually(WAIT, "its client is served", || async {
        let (code, body) = request(&ctx, &server, "squatter-app", &secret, &[]).await?;
        ensure!(code == 200, "{code} {body}");
        Ok(())
    })
    .await?;
    wait_granted(&ctx.client, &other.name, "squatter-app", "True", "Granted").await?;
    Ok(())
}

async fn modes(ctx: Ctx) -> anyhow::Result<()> {
    // One controller (Warn, the default) and two servers: Warn and Enforce.
    let (port_w, port_e) = (envtest::free_port()?, envtest::free_port()?);
    let issuer = format!("http://127.0.0.1:{port_w}");
    let _controller = ctx.start_controller(&issuer)?;
    let warn = ctx.start_server(port_w).await?;
    let enforce = ctx
        .start_server_with(
            port_e,
            &[
                &format!("--issuer={issuer}"),
                "--audience-ownership=Enforce",
            ],
        )
        .await?;
    let ns = ctx.ns.as_str();
    ctx.apply(&format!(
        "{}{}",
        client_yaml(
            "legacy",
            "  audiences: [\"https://legacy.example.test\"]\n  scopes: [read]"
        ),
        client_yaml("plain", "  scopes: [read]"),
    ))?;
    ctx.wait_ready("legacy").await?;
    ctx.wait_ready("plain").await?;
    let legacy = wait_granted(&ctx.client, ns, "legacy", "False", "UnclaimedAudience").await?;
    ensure!(
        condition_message(&legacy, "AudiencesGranted").contains("Warn"),
        "the condition says what Enforce would do"
    );
    let legacy_secret = ctx.credentials("legacy-credentials").await?.1;
    let plain_secret = ctx.credentials("plain-credentials").await?.1;

    // Warn: served as before, and counted.
    for _ in 0..3 {
        let (code, body) = request(&ctx, &warn, "legacy", &legacy_secret, &[]).await?;
        ensure!(code == 200, "Warn: {code} {body}");
        ensure!(body["scope"] == "read", "Warn keeps the scope: {body}");
    }
    let text = warn.metrics(&ctx.http).await?;
    ensure!(
        metric(&text, "oauth_operator_tokens_unclaimed_audience_total") == 3.0,
        "the metric counts tokens for unclaimed audiences: {text}"
    );
    // Log lines are written in batches by a thread of their own: a moment later.
    eventually(
        Duration::from_secs(10),
        "an audit line per token for an unclaimed audience",
        || async {
            ensure!(
                warn.process().log_text().contains("unclaimed_audience"),
                "not in the log yet"
            );
            Ok(())
        },
    )
    .await?;

    // Enforce: refused; the default audience is still served, without API scopes.
    let (code, body) = request(&ctx, &enforce, "legacy", &legacy_secret, &[]).await?;
    ensure!(
        code == 400 && body["error"] == "invalid_target",
        "Enforce: {code} {body}"
    );
    let (code, body) = request(&ctx, &enforce, "plain", &plain_secret, &[]).await?;
    ensure!(
        code == 200 && body.get("scope").is_none(),
        "Enforce, default audience: {code} {body}"
    );
    let text = enforce.metrics(&ctx.http).await?;
    ensure!(
        metric(&text, "oauth_operator_tokens_unclaimed_audience_total") == 0.0,
        "nothing unclaimed is served under Enforce"
    );

    // Claimed by a resource here (granting this namespace): served in both modes.
    ctx.apply(&resource_yaml("legacy-api",
        "  audience: https://legacy.example.test\n  scopes:\n  - name: read\n  access:\n  - scopes: [read]\n",
    ))?;
    wait_granted(&ctx.client, ns, "legacy", "True", "Granted").await?;
    for server in [&warn, &enforce] {
        eventually(WAIT, "served once claimed and granted", || async {
            let (code, body) = request(&ctx, server, "legacy", &legacy_secret, &[]).await?;
            ensure!(code == 200 && body["scope"] == "read", "{code} {body}");
            Ok(())
        })
        .await?;
    }
    Ok(())
}

async fn bad_resources(ctx: Ctx) -> anyhow::Result<()> {
    let cases = [
        ("  audience: not a uri\n", "spec.audience"),
        (
            "  audience: https://a.example.test/#frag\n",
            "spec.audience",
        ),
        (
            "  audience: https://a.example.test\n  scopes:\n  - name: read\n  access:\n  - scopes: [write]\n",
            "every granted scope must be declared in spec.scopes",
        ),
        (
            "  audience: https://a.example.test\n  roles:\n  - name: admin\n  access:\n  - roles: [root]\n",
            "every granted role must be declared in spec.roles",
        ),
        (
            "  audience: https://a.example.test\n  scopes:\n  - name: read\n  access:\n  - namespace: other\n",
            "a grant must give at least one scope or role",
        ),
        (
            "  audience: https://a.example.test\n  scopes:\n  - name: read\n  access:\n  - clientIds: [x]\n    namespace: other\n    scopes: [read]\n",
            "clientIds names clients wherever they are",
        ),
        (
            "  audience: https://a.example.test\n  roles:\n  - name: admin\n  users:\n  - groups: [ops]\n    roles: [root]\n",
            "every mapped role must be declared in spec.roles",
        ),
    ];
    for (spec, field) in cases {
        let err = ctx.apply_refused(&resource_yaml("bad", spec))?;
        ensure!(
            err.contains(field),
            "{spec}: the refusal does not name {field}: {err}"
        );
    }
    // The audience is immutable once claimed.
    ctx.apply(&resource_yaml(
        "api",
        "  audience: https://a.example.test\n",
    ))?;
    let err = ctx.apply_refused(&resource_yaml(
        "api",
        "  audience: https://b.example.test\n",
    ))?;
    ensure!(err.contains("spec.audience is immutable"), "{err}");
    Ok(())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The dashboard (a public web application asking for the payments API), `gateway` (a
/// resource server that introspects), user erin of group `finance`, and the payments API
/// mapping `finance` to its admin role, granting this namespace `payments.read` when
/// `granted`.
fn sign_in_yaml(ctx: &Ctx, redirect: &str, granted: bool) -> anyhow::Result<String> {
    let ns = ctx.ns.as_str();
    ctx.secret("password of erin", "erin-password-1");
    let hash = oauth_operator::auth::hash::hash("erin-password-1")?;
    let access = if granted {
        "  access:\n  - scopes: [payments.read]\n"
    } else {
        ""
    };
    Ok(format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthUser\nmetadata: {{name: erin, namespace: {ns}}}\nspec:\n  groups: [finance]\n  passwordHash: '{hash}'\n---\n{}{}{}",
        client_yaml(
            "dashboard",
            &format!(
                "  displayName: Dashboard\n  type: public\n  grantTypes: [authorization_code, refresh_token]\n  refreshCount: Unlimited\n  redirectUris: [\"{redirect}\"]\n  audiences: [\"{API}\"]\n  scopes: [payments.read]"
            ),
        ),
        client_yaml("gateway", "  scopes: [read]"),
        resource_yaml(
            "payments",
            &format!(
                "  audience: {API}\n  scopes:\n  - name: payments.read\n  roles:\n  - name: payments-admin\n  users:\n  - groups: [finance]\n    roles: [payments-admin]\n{access}"
            ),
        ),
    ))
}

async fn sign_in(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    let callback = CallbackServer::start().await?;
    ctx.apply(&sign_in_yaml(&ctx, &callback.url(), true)?)?;
    ctx.wait_ready("dashboard").await?;
    ctx.wait_ready("gateway").await?;
    wait_granted(&ctx.client, &ctx.ns, "dashboard", "True", "Granted").await?;
    let gateway = ctx.credentials("gateway-credentials").await?.1;
    let verifier = format!(
        "{}{}",
        oauth_operator::auth::secret::random_id()?,
        oauth_operator::auth::secret::random_id()?
    );
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let authorize = |resource: &str| {
        format!(
            "{}/authorize?response_type=code&client_id=dashboard&redirect_uri={}&scope={}&state=s&code_challenge={challenge}&code_challenge_method=S256&resource={}",
            server.url,
            enc(&callback.url()),
            enc("openid payments.read"),
            enc(resource)
        )
    };

    // A resource the client may not have is refused to the application, before any sign-in.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = no_redirects
        .get(authorize("https://nothing-here.example.test"))
        .send()
        .await?;
    let location = res
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(
        location.starts_with(&callback.url()) && location.contains("error=invalid_target"),
        "an unknown resource at /authorize: {} {location}",
        res.status()
    );

    let browser = Browser::start().await?;
    browser.goto(&authorize(API)).await?;
    eventually(WAIT, "the sign-in page", || async {
        let text = browser.text().await?;
        ensure!(text.contains("Dashboard"), "{text}");
        Ok(())
    })
    .await?;
    browser.fill("username", "erin").await?;
    browser.fill("password", "erin-password-1").await?;
    browser.submit().await?;
    let query = callback.next_query(WAIT).await?;
    let code = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no code: {query}"))?;
    ctx.secret("authorization code", &code);
    let redirect = callback.url();
    let (status, _, tokens) = server
        .token(
            &ctx.http,
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "dashboard"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
    for key in ["access_token", "refresh_token", "id_token"] {
        if let Some(t) = tokens[key].as_str() {
            ctx.secret(key, t);
        }
    }
    ensure!(status == 200, "exchange: {status} {tokens}");
    let claims = verify_token(
        &ctx.http,
        &server,
        tokens["access_token"].as_str().context("access_token")?,
        API,
    )
    .await?;
    ensure!(
        claims.roles == ["member", "payments-admin"]
            && claims.scope.as_deref() == Some("openid payments.read"),
        "erin's token: {:?} {:?}",
        claims.roles,
        claims.scope
    );
    let refresh = |token: String| {
        let (server, http) = (&server, &ctx.http);
        async move {
            let (status, _, body) = server
                .token(
                    http,
                    None,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", "dashboard"),
                        ("refresh_token", &token),
                    ],
                )
                .await?;
            anyhow::Ok((status, body))
        }
    };
    let (status, refreshed) =
        refresh(tokens["refresh_token"].as_str().context("rt")?.to_string()).await?;
    for key in ["access_token", "refresh_token", "id_token"] {
        if let Some(t) = refreshed[key].as_str() {
            ctx.secret(key, t);
        }
    }
    ensure!(
        status == 200,
        "a refresh while granted: {status} {refreshed}"
    );
    let access = refreshed["access_token"]
        .as_str()
        .context("access")?
        .to_string();
    let next = refreshed["refresh_token"]
        .as_str()
        .context("rt")?
        .to_string();
    ensure!(
        introspect(&ctx, &server, "gateway", &gateway, &access).await?["active"] == true,
        "active while granted"
    );

    // The API's team withdraws the grant: the refresh ends, and so do its access tokens.
    ctx.apply(&sign_in_yaml(&ctx, &callback.url(), false)?)?;
    eventually(
        Duration::from_secs(10),
        "the access token introspects inactive",
        || async {
            let v = introspect(&ctx, &server, "gateway", &gateway, &access).await?;
            ensure!(v["active"] == false, "{v}");
            Ok(())
        },
    )
    .await?;
    let (status, body) = refresh(next.clone()).await?;
    ensure!(
        status == 400 && body["error"] == "invalid_grant",
        "a refresh after the grant is withdrawn: {status} {body}"
    );
    // Ended for good: granting again does not bring that sign-in back.
    ctx.apply(&sign_in_yaml(&ctx, &callback.url(), true)?)?;
    wait_granted(&ctx.client, &ctx.ns, "dashboard", "True", "Granted").await?;
    let (status, body) = refresh(next).await?;
    ensure!(
        status == 400 && body["error"] == "invalid_grant",
        "the ended sign-in stays ended: {status} {body}"
    );
    browser.close().await?;
    Ok(())
}

/// Cluster-scoped policies of one test, deleted when dropped. Each selects only namespaces
/// labelled for this test: tests run side by side on one control plane.
struct Policies {
    client: kube::Client,
    names: Vec<String>,
}

impl Drop for Policies {
    fn drop(&mut self) {
        let (client, names) = (self.client.clone(), self.names.clone());
        tokio::spawn(async move {
            let api: Api<oauth_operator::api::OAuthClientPolicy> = Api::all(client);
            for n in names {
                let _ = api.delete(&n, &DeleteParams::default()).await;
            }
        });
    }
}

/// A policy selecting namespaces labelled `tier=<tier>`, with `enforcement`: client
/// credentials and the authorization code grant only, tokens of at most 300 s, redirect URIs on the namespace's own hosts,
/// audiences under the namespace's own URL.
fn policy_yaml(name: &str, tier: &str, enforcement: &str) -> String {
    format!(
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClientPolicy\nmetadata:\n  name: {name}\nspec:\n  namespaceSelector:\n    matchLabels: {{tier: {tier}}}\n  enforcement: {enforcement}\n  clients:\n    grantTypes: [client_credentials, authorization_code]\n    maxAccessTokenLifetimeSeconds: 300\n    redirectUriHosts: [\"*.{{namespace}}.apps.example.test\"]\n  resources:\n    audiences: [\"https://{{namespace}}.api.example.test/*\"]\n---\n"
    )
}

/// The message of `ns/name`'s condition `type_` once it has `status` and `reason`.
async fn condition(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let c = wait_condition(&ctx.client, ns, name, type_, status, reason).await?;
    Ok(condition_message(&c, type_))
}

async fn policies(ctx: Ctx) -> anyhow::Result<()> {
    let enforced = Extra::create(&ctx, "enf").await?;
    let warned = Extra::create(&ctx, "warn").await?;
    let (tier_e, tier_w) = (format!("enforced-{}", ctx.ns), format!("warned-{}", ctx.ns));
    let tier_e: String = tier_e
        .chars()
        .rev()
        .take(63)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let tier_w: String = tier_w
        .chars()
        .rev()
        .take(63)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    for (ns, tier) in [(&enforced.name, &tier_e), (&warned.name, &tier_w)] {
        let out = ctx.kubectl(&["label", "namespace", ns, &format!("tier={tier}")], None)?;
        ensure!(
            out.status.success(),
            "label: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = vec![format!("{}-enforce", ctx.ns), format!("{}-warn", ctx.ns)];
    let _policies = Policies {
        client: ctx.client.clone(),
        names: names.clone(),
    };
    ctx.apply(&format!(
        "{}{}",
        policy_yaml(&names[0], &tier_e, "Enforce"),
        policy_yaml(&names[1], &tier_w, "Warn")
    ))?;
    let watch = [
        format!("--namespace={}", enforced.name),
        format!("--namespace={}", warned.name),
    ];
    let watch: Vec<&str> = watch.iter().map(String::as_str).collect();
    let port = envtest::free_port()?;
    let controller = ctx.start_controller_with(&format!("http://127.0.0.1:{port}"), &watch)?;
    let server = ctx.start_server_with(port, &watch).await?;

    // The same three objects in both namespaces: a web application on someone else's
    // host, a service asking for hour-long tokens, and an API claiming another's URL.
    let objects = |suffix: &str| {
        format!(
            "{}{}{}",
            client_yaml(
                &format!("web-{suffix}"),
                "  grantTypes: [client_credentials, authorization_code, refresh_token]\n  redirectUris: [\"https://app.elsewhere.example.test/cb\"]"
            ),
            client_yaml(
                &format!("svc-{suffix}"),
                "  accessTokenLifetimeSeconds: 3600"
            ),
            resource_yaml(
                "api",
                "  audience: https://someone-else.example.test\n  scopes:\n  - name: read\n  access:\n  - scopes: [read]\n"
            ),
        )
    };
    ctx.apply_in(&enforced.name, &objects("e"))?;
    ctx.apply_in(&warned.name, &objects("w"))?;

    // Enforce: the web application is not served, and its status names each field and bound.
    let e = enforced.name.as_str();
    let msg = condition(
        &ctx,
        e,
        "web-e",
        "PolicyCompliant",
        "False",
        "PolicyViolation",
    )
    .await?;
    let host_bound = format!("*.{e}.apps.example.test");
    for needle in [
        "spec.grantTypes",
        "refresh_token",
        "spec.redirectUris",
        &host_bound,
        &names[0],
    ] {
        ensure!(
            msg.contains(needle),
            "the condition does not name {needle}: {msg}"
        );
    }
    condition(&ctx, e, "web-e", "Ready", "False", "PolicyViolation").await?;
    let web_secret = credentials(&ctx, e, "web-e").await?;
    let (code, body) = request(&ctx, &server, "web-e", &web_secret, &[]).await?;
    ensure!(
        code == 401 && body["error"] == "invalid_client",
        "enforced web: {code} {body}"
    );
    // The lifetime is cut to the bound, and said so.
    let msg = condition(
        &ctx,
        e,
        "svc-e",
        "PolicyCompliant",
        "False",
        "PolicyViolation",
    )
    .await?;
    ensure!(
        msg.contains("spec.accessTokenLifetimeSeconds")
            && msg.contains("3600 is above the bound of 300"),
        "{msg}"
    );
    let svc_secret = credentials(&ctx, e, "svc-e").await?;
    eventually(WAIT, "tokens of the bound's lifetime", || async {
        let (code, body) = request(&ctx, &server, "svc-e", &svc_secret, &[]).await?;
        ensure!(code == 200 && body["expires_in"] == 300, "{code} {body}");
        Ok(())
    })
    .await?;
    // The API claiming another's URL is not accepted.
    eventually(
        WAIT,
        "the claim outside the namespace's space is refused",
        || async {
            let (status, reason, message, _) = resource_condition(&ctx, e, "api").await?;
            ensure!(
                status == "False"
                    && reason == "AudienceNotAllowed"
                    && message.contains("spec.audience")
                    && message.contains(&format!("https://{e}.api.example.test/*")),
                "{status} {reason} {message}"
            );
            Ok(())
        },
    )
    .await?;

    // Warn: the same objects are served as written, and reported.

    let w = warned.name.as_str();
    let msg = condition(
        &ctx,
        w,
        "web-w",
        "PolicyCompliant",
        "False",
        "PolicyWarning",
    )
    .await?;
    ensure!(
        msg.contains("spec.grantTypes") && msg.contains("spec.redirectUris"),
        "{msg}"
    );
    condition(&ctx, w, "web-w", "Ready", "True", "CredentialsReady").await?;
    let web_secret = credentials(&ctx, w, "web-w").await?;
    let (code, body) = request(&ctx, &server, "web-w", &web_secret, &[]).await?;
    ensure!(code == 200, "warned web: {code} {body}");
    condition(
        &ctx,
        w,
        "svc-w",
        "PolicyCompliant",
        "False",
        "PolicyWarning",
    )
    .await?;
    let svc_secret = credentials(&ctx, w, "svc-w").await?;
    let (code, body) = request(&ctx, &server, "svc-w", &svc_secret, &[]).await?;
    ensure!(
        code == 200 && body["expires_in"] == 3600,
        "warned svc keeps its lifetime: {code} {body}"
    );
    eventually(
        WAIT,
        "the warned claim is accepted and reported",
        || async {
            let (status, reason, ..) = resource_condition(&ctx, w, "api").await?;
            ensure!(status == "True" && reason == "Claimed", "{status} {reason}");
            let r: OAuthResource = Api::namespaced(ctx.client.clone(), w).get("api").await?;
            let warned = r
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|c| c.type_ == "PolicyCompliant" && c.reason == "PolicyWarning");
            ensure!(warned, "no PolicyWarning on the resource");
            Ok(())
        },
    )
    .await?;
    eventually(WAIT, "a Warning Event for the warned client", || async {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(ctx.client.clone(), w);
        let found = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("PolicyWarning")
            });
        ensure!(found, "no PolicyWarning Event yet");
        Ok(())
    })
    .await?;

    eventually(
        Duration::from_secs(10),
        "an audit line for each client outside a bound",
        || async {
            ensure!(
                controller.log_text().contains("policy_violation"),
                "not in the log yet"
            );
            Ok(())
        },
    )
    .await?;

    // Registration under an initial access token of the enforced namespace stays within it
    // (RFC 7591 section 3.2.2).
    ctx.apply_in(
        e,
        "apiVersion: oauth-operator.dev/v1alpha1\nkind: InitialAccessToken\nmetadata:\n  name: onboarding\nspec:\n  expiresAfter: 1h\n  count: 3\n",
    )?;
    let token = eventually(WAIT, "the initial access token", || async {
        let s: Secret = Api::namespaced(ctx.client.clone(), e)
            .get("onboarding-token")
            .await?;
        let v = s
            .data
            .and_then(|d| d.get("token").cloned())
            .context("token")?;
        Ok(String::from_utf8(v.0)?)
    })
    .await?;
    ctx.secret("initial access token", &token);
    let register = |body: serde_json::Value| {
        let (http, url, token) = (ctx.http.clone(), server.url.clone(), token.clone());
        async move {
            let res = http
                .post(format!("{url}/register"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?;
            let status = res.status().as_u16();
            anyhow::Ok((
                status,
                res.json::<serde_json::Value>().await.unwrap_or_default(),
            ))
        }
    };
    eventually(
        WAIT,
        "a redirect URI outside the namespace's hosts is refused",
        || async {
            let (status, body) = register(serde_json::json!({
                "grant_types": ["authorization_code"],
                "redirect_uris": ["https://app.elsewhere.example.test/cb"],
            }))
            .await?;
            ensure!(
                status == 400
                    && body["error"] == "invalid_redirect_uri"
                    && body["error_description"]
                        .as_str()
                        .is_some_and(|d| d.contains(&host_bound)),
                "{status} {body}"
            );
            Ok(())
        },
    )
    .await?;
    let (status, body) = register(serde_json::json!({
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [format!("https://app.{e}.apps.example.test/cb")],
    }))
    .await?;
    ensure!(
        status == 400
            && body["error"] == "invalid_client_metadata"
            && body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("refresh_token")),
        "a grant type outside the policy: {status} {body}"
    );
    let (status, body) = register(serde_json::json!({
        "grant_types": ["authorization_code"],
        "redirect_uris": [format!("https://app.{e}.apps.example.test/cb")],
    }))
    .await?;
    ensure!(status == 201, "within the policy: {status} {body}");
    for key in ["client_secret", "registration_access_token"] {
        if let Some(v) = body[key].as_str() {
            ctx.secret(key, v);
        }
    }

    // Switching the enforced policy to Warn serves the web application again.

    ctx.apply(&policy_yaml(&names[0], &tier_e, "Warn"))?;
    condition(&ctx, e, "web-e", "Ready", "True", "CredentialsReady").await?;
    eventually(WAIT, "served once the policy warns", || async {
        let (code, body) = request(
            &ctx,
            &server,
            "web-e",
            &credentials(&ctx, e, "web-e").await?,
            &[],
        )
        .await?;
        ensure!(code == 200, "{code} {body}");
        Ok(())
    })
    .await?;
    Ok(())
}

/// The upgrade of an installation whose clients name audiences nobody claims. The previous
/// version is stood in for by what it left and how it served: verifiers without the
/// clients' labels, and a server that serves every listed audience (`Off`). The new
/// controller rewrites every verifier and a new replica in `Warn` (the upgrade's mode)
/// takes the load while the old one goes: not one request is refused, and each unclaimed
/// audience is reported.
async fn upgrade(ctx: Ctx) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tokio::sync::RwLock;
    const CLIENTS: usize = 8;
    let (port_a, port_b) = (envtest::free_port()?, envtest::free_port()?);
    let issuer = format!("http://127.0.0.1:{port_a}");
    let mut controller = ctx.start_controller(&issuer)?;
    let server_a = ctx
        .start_server_with(port_a, &["--audience-ownership=Off"])
        .await?;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("legacy-{i}")).collect();
    ctx.apply(
        &names
            .iter()
            .map(|n| {
                format!(
                    "apiVersion: oauth-operator.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {n}\n  labels: {{app: {n}}}\nspec:\n  clientId: {n}\n  audiences: [\"https://{n}.legacy.example.test\"]\n  scopes: [read]\n---\n"
                )
            })
            .collect::<String>(),
    )?;
    let mut clients = Vec::new();
    for n in &names {
        ctx.wait_ready(n).await?;
        clients.push(ctx.credentials(&format!("{n}-credentials")).await?);
    }
    let clients = Arc::new(clients);

    // The previous version: its controller stopped, its verifiers without labels.
    controller.terminate()?;
    ensure!(
        controller
            .wait_exit(Duration::from_secs(20))
            .await?
            .is_some(),
        "the controller did not stop"
    );
    let verifiers = ctx.api::<oauth_operator::api::OAuthClientVerifier>();
    for n in &names {
        verifiers
            .patch(
                n,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Json::<()>(serde_json::from_value(serde_json::json!([
                    {"op": "remove", "path": "/spec/labels"}
                ]))?),
            )
            .await?;
    }
    let target = Arc::new(RwLock::new(server_a.url.clone()));
    let load = crate::verification::Load::start(&ctx, target.clone(), clients.clone(), 4);

    // The upgrade: the new controller (Warn) rewrites every verifier; a new replica (Warn)
    // takes the load, then the old one goes.
    let _controller = ctx.start_controller(&issuer)?;
    eventually(
        Duration::from_secs(60),
        "every verifier rewritten",
        || async {
            for n in &names {
                let v = verifiers.get(n).await?;
                ensure!(!v.spec.labels.is_empty(), "{n}: not rewritten yet");
            }
            Ok(())
        },
    )
    .await?;
    let server_b = ctx
        .start_server_with(port_b, &[&format!("--issuer={issuer}")])
        .await?;
    load.hand_over(&target, &server_a, &server_b, CLIENTS)
        .await?;
    let text = server_b.metrics(&ctx.http).await?;
    ensure!(
        metric(&text, "oauth_operator_tokens_unclaimed_audience_total") > 0.0,
        "the new replica reports tokens for unclaimed audiences: {text}"
    );
    for n in &names {
        wait_granted(&ctx.client, &ctx.ns, n, "False", "UnclaimedAudience").await?;
    }
    Ok(())
}

async fn namespace_selector(ctx: Ctx) -> anyhow::Result<()> {
    let team = Extra::create(&ctx, "team").await?;
    // A label only this test uses: tests share the control plane.
    let group: String = format!("g{}", ctx.ns)
        .chars()
        .rev()
        .take(60)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let flags = [
        format!("--namespace={}", team.name),
        "--namespace-selectors".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let port = envtest::free_port()?;
    let _controller = ctx.start_controller_with(&format!("http://127.0.0.1:{port}"), &flags)?;
    let server = ctx.start_server_with(port, &flags).await?;
    ctx.apply(&resource_yaml(
        "payments",
        &format!(
            "  audience: {API}\n  scopes:\n  - name: payments.read\n  access:\n  - namespaceSelector:\n      matchLabels: {{group: {group}}}\n    scopes: [payments.read]\n"
        ),
    ))?;
    ctx.apply_in(&team.name, &client_yaml("team-app", ASKS))?;
    wait_client(&ctx.client, &team.name, "team-app").await?;
    wait_granted(&ctx.client, &team.name, "team-app", "False", "NotGranted").await?;
    let secret = credentials(&ctx, &team.name, "team-app").await?;
    let (code, body) = request(&ctx, &server, "team-app", &secret, &[]).await?;
    ensure!(
        code == 400 && body["error"] == "invalid_target",
        "unlabelled: {code} {body}"
    );

    let label = |value: Option<&str>| {
        let arg = match value {
            Some(v) => format!("group={v}"),
            None => "group-".to_string(),
        };
        let out = ctx.kubectl(
            &["label", "--overwrite", "namespace", &team.name, &arg],
            None,
        )?;
        ensure!(
            out.status.success(),
            "label: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::Ok(())
    };
    label(Some(&group))?;
    eventually(WAIT, "granted once the namespace is labelled", || async {
        let (code, body) = request(&ctx, &server, "team-app", &secret, &[]).await?;
        ensure!(
            code == 200 && body["scope"] == "payments.read",
            "{code} {body}"
        );
        Ok(())
    })
    .await?;
    wait_granted(&ctx.client, &team.name, "team-app", "True", "Granted").await?;
    label(None)?;
    eventually(WAIT, "refused once the label is gone", || async {
        let (code, body) = request(&ctx, &server, "team-app", &secret, &[]).await?;
        ensure!(
            code == 400 && body["error"] == "invalid_target",
            "{code} {body}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}
