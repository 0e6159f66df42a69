//! Sign-in in a real headless Chromium (the harness is `browser.rs`).

use std::time::Duration;

use anyhow::ensure;

use crate::browser::{Browser, CallbackServer};
use crate::support::{Ctx, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![("browser_reaches_the_token_server_and_a_callback", |c| {
        Box::pin(reaches_server_and_callback(c))
    })]
}

/// The harness itself, end to end: the browser loads a page of the real token server, a
/// redirect URI's query reaches the client application unchanged, and so does a form
/// the browser fills in and submits (as the sign-in form will be); a page that cannot
/// load fails the step.
async fn reaches_server_and_callback(ctx: Ctx) -> anyhow::Result<()> {
    let (_controller, server) = ctx.start_stack().await?;
    let callback = CallbackServer::start().await?;
    let browser = Browser::start().await?;

    browser
        .goto(&format!("{}/.well-known/openid-configuration", server.url))
        .await?;
    let text = browser.text().await?;
    let issuer = format!("\"issuer\":\"{}\"", server.url);
    ensure!(text.contains(&issuer), "no {issuer} in the page: {text}");

    let redirect = format!("{}?code=abc&state=xyz", callback.url());
    browser.goto(&redirect).await?;
    let query = callback.next_query(Duration::from_secs(10)).await?;
    ensure!(query == "code=abc&state=xyz", "the callback got {query:?}");
    let url = browser
        .wait_for_url("the callback", Duration::from_secs(10), |u| u == redirect)
        .await?;
    ensure!(url == redirect, "the browser is at {url}");
    let text = browser.text().await?;
    ensure!(
        text.contains("callback received"),
        "the callback page: {text}"
    );
    // A fresh profile: nothing from an earlier test.
    let cookies = browser.cookies().await?;
    ensure!(cookies.is_empty(), "cookies in a new browser: {cookies:?}");

    let form = format!(
        "data:text/html,<form action='{}'><input name=code><input name=state>\
         <button>Continue</button></form>",
        callback.url()
    );
    browser.goto(&form).await?;
    browser.fill("code", "def").await?;
    browser.fill("state", "a b&c").await?;
    browser.submit().await?;
    let query = callback.next_query(Duration::from_secs(10)).await?;
    ensure!(query == "code=def&state=a+b%26c", "the form sent {query:?}");
    browser
        .wait_for_url("the callback", Duration::from_secs(10), |u| {
            u.starts_with(&callback.url())
        })
        .await?;

    // A page that cannot load is an error at once, not an error page to trip over later.
    let nowhere = format!("http://127.0.0.1:{}/", envtest::free_port()?);
    ensure!(browser.goto(&nowhere).await.is_err(), "{nowhere} loaded");

    browser.close().await
}
