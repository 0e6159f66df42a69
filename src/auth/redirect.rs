//! Which redirect URI an authorization request may use: exactly one the client registered
//! (RFC 9700 section 4.1.3: no patterns, no prefixes, no open redirect), with the one
//! exception of RFC 8252 section 7.3: a native app listening on a loopback IP literal gets
//! an ephemeral port from its OS, so for `http://127.0.0.1` and `http://[::1]` the port of
//! the request may differ from the registered one while everything else must be equal.

use http::Uri;

/// The registered URI the request's `redirect_uri` matches, if any.
pub fn matching<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    registered
        .iter()
        .map(String::as_str)
        .find(|r| *r == requested || loopback_match(r, requested))
}

/// Both are `http` on the same loopback IP literal with the same path and query; the
/// ports may differ. `localhost` is left out, as RFC 8252 section 8.3 advises: a name can
/// resolve elsewhere, a literal cannot.
fn loopback_match(registered: &str, requested: &str) -> bool {
    let (Ok(r), Ok(q)) = (registered.parse::<Uri>(), requested.parse::<Uri>()) else {
        return false;
    };
    let loopback = |u: &Uri| matches!(u.host(), Some("127.0.0.1" | "[::1]"));
    let plain_http = |u: &Uri| u.scheme_str() == Some("http");
    // No user info: `http://127.0.0.1@evil.example/` must never pass for a loopback URI.
    let no_userinfo = |u: &Uri| u.authority().is_some_and(|a| !a.as_str().contains('@'));
    plain_http(&r)
        && plain_http(&q)
        && loopback(&r)
        && no_userinfo(&r)
        && no_userinfo(&q)
        && r.host() == q.host()
        && r.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            == q.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Vec<String> {
        [
            "https://app.example.com/callback",
            "http://127.0.0.1:8400/cb",
            "http://[::1]/cb",
            "com.example.app:/oauth2redirect",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn exact_matches_pass() {
        for uri in registered() {
            assert_eq!(matching(&registered(), &uri), Some(uri.as_str()));
        }
    }

    #[test]
    fn anything_but_the_exact_string_fails_for_https() {
        for uri in [
            "https://app.example.com/callback/",
            "https://app.example.com/callback?next=/admin",
            "https://app.example.com/Callback",
            "https://app.example.com:443/callback",
            "http://app.example.com/callback",
            "https://app.example.com.evil.example/callback",
            "https://evil.example/?https://app.example.com/callback",
            "com.example.app:/oauth2redirect/x",
            "",
        ] {
            assert_eq!(matching(&registered(), uri), None, "{uri}");
        }
    }

    #[test]
    fn a_loopback_literal_may_change_its_port_only() {
        let r = registered();
        assert_eq!(
            matching(&r, "http://127.0.0.1:51004/cb"),
            Some("http://127.0.0.1:8400/cb")
        );
        assert_eq!(
            matching(&r, "http://[::1]:61000/cb"),
            Some("http://[::1]/cb")
        );
        for uri in [
            "http://127.0.0.1:51004/other",
            "http://127.0.0.1:51004/cb?x=1",
            "https://127.0.0.1:51004/cb",
            "http://localhost:51004/cb",
            "http://127.0.0.2:8400/cb",
            "http://[::1]:61000/cb/",
            "http://127.0.0.1:8400@evil.example/cb",
        ] {
            assert_eq!(matching(&r, uri), None, "{uri}");
        }
    }

    #[test]
    fn localhost_gets_no_port_exception() {
        let r = vec!["http://localhost:8400/cb".to_string()];
        assert_eq!(
            matching(&r, "http://localhost:8400/cb"),
            Some("http://localhost:8400/cb")
        );
        assert_eq!(matching(&r, "http://localhost:9000/cb"), None);
    }
}
