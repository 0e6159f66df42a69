//! The two pages the token server shows a person: the sign-in form and the error page.
//! Server-rendered HTML that needs no JavaScript, with labels and `autocomplete` hints
//! for password managers and screen readers.
//!
//! Written by hand, not with a template engine: two small fixed pages, whose only
//! variable parts are escaped here by [`escape`] (the five characters that matter in
//! HTML text and double-quoted attributes).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// What the sign-in form shows.
pub struct SignIn<'a> {
    /// The application asking: its display name, else its client id.
    pub application: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The pending request's id (a hidden field; the cookie of the same name holds it).
    pub request: &'a str,
    /// The username typed before, on a second try.
    pub username: &'a str,
    /// Why the last try failed.
    pub error: Option<&'a str>,
    /// The upstream providers to sign in through: each one's display name and the link
    /// that starts it (`/authorize/upstream/{name}?request=...`).
    pub upstreams: &'a [(String, String)],
}

/// The sign-in form.
pub fn sign_in(p: &SignIn<'_>) -> Response {
    let error = p.error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e))
    });
    let body = format!(
        r#"<h1>Sign in</h1>
<p><strong>{app}</strong> asks you to sign in.</p>
{error}<form method="post" action="{action}">
<input type="hidden" name="request" value="{request}">
<p><label for="username">Username</label><br>
<input id="username" name="username" autocomplete="username" required autofocus value="{username}"></p>
<p><label for="password">Password</label><br>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>{upstreams}"#,
        app = escape(p.application),
        action = escape(p.action),
        request = escape(p.request),
        username = escape(p.username),
        upstreams = upstream_links(p.upstreams),
    );
    page(StatusCode::OK, "Sign in", &body)
}

/// One link per upstream provider, under the form: plain links (GET), so no script and
/// no second form are needed.
fn upstream_links(upstreams: &[(String, String)]) -> String {
    if upstreams.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n<p>Or:</p>\n<ul class=\"upstreams\">\n");
    for (name, href) in upstreams {
        out.push_str(&format!(
            "<li><a class=\"upstream\" href=\"{}\">Sign in with {}</a></li>\n",
            escape(href),
            escape(name)
        ));
    }
    out.push_str("</ul>");
    out
}

/// An error the person must see, because nothing can be sent back to the application.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in failed</h1>\n<p role=\"alert\">{}</p>\n<p>Go back to the application and start again.</p>",
        escape(message)
    );
    page(status, "Sign-in failed", &body)
}

/// Asks before signing out, for a logout that did not prove where it came from.
pub fn confirm_logout(action: &str, fields: &[(&str, &str)]) -> Response {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let body = format!(
        "<h1>Sign out</h1>\n<p>Do you want to sign out?</p>\n<form method=\"post\" action=\"{}\">\n{hidden}<p><button type=\"submit\">Sign out</button></p>\n</form>",
        escape(action)
    );
    page(StatusCode::OK, "Sign out", &body)
}

/// After a logout with nowhere to go back to.
pub fn signed_out() -> Response {
    page(
        StatusCode::OK,
        "Signed out",
        "<h1>Signed out</h1>\n<p>You are signed out. You can close this window.</p>",
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}input{{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}}button{{font-size:1rem;padding:.5rem 1.5rem}}.error{{color:#a00;font-weight:bold}}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
    );
    let mut res = (status, Html(html)).into_response();
    let headers = res.headers_mut();
    // No script at all, no framing (clickjacking a sign-in form), nothing cached, and no
    // Referer to the application carrying this page's query.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// `text` safe in HTML text and in double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[tokio::test]
    async fn the_form_names_the_application_and_escapes_what_it_echoes() {
        let res = sign_in(&SignIn {
            application: "<b>Billing</b>",
            action: "/authorize/login",
            request: "r1",
            username: "\"><script>",
            error: Some("Incorrect username or password."),
            upstreams: &[(
                "<Corp>".into(),
                "/authorize/upstream/corp?request=r1".into(),
            )],
        });
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|v| v.contains("frame-ancestors 'none'"))
        );
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        let html = String::from_utf8_lossy(&body);
        assert!(html.contains("&lt;b&gt;Billing&lt;/b&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains(r#"name="request" value="r1""#));
        assert!(html.contains(
            r#"<a class="upstream" href="/authorize/upstream/corp?request=r1">Sign in with &lt;Corp&gt;</a>"#
        ));
    }
}
