//! Redirects of a client's upgrade (opt-in, `Config::max_redirects`): where
//! a 3xx answer sends the client, and what it may take along.

use crate::target::{basic_authorization, Target};

/// The statuses that redirect: 301, 302, 303, 307, 308.
pub(crate) fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Where `location` (absolute, or relative to `current`'s URL) sends a
/// client that was at `current`: `http` becomes `ws` and `https` becomes
/// `wss`, as other WebSocket clients do. A redirect from `wss` to `ws`
/// (TLS taken away) is refused, as is any other scheme.
pub(crate) fn next_hop(current: &Target, location: &str) -> Result<Target, String> {
    let base = url::Url::parse(&current.url).map_err(|e| e.to_string())?;
    let mut next = base
        .join(location)
        .map_err(|e| format!("invalid Location '{location}': {e}"))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(format!("a redirect to scheme '{other}' ('{location}')")),
    };
    if current.tls && scheme == "ws" {
        return Err(format!(
            "a redirect from wss to ws ('{location}') would drop TLS"
        ));
    }
    next.set_fragment(None);
    let mut url = next.to_string();
    if next.scheme() != scheme {
        url = format!("{scheme}{}", &url[next.scheme().len()..]);
    }
    Target::parse(&url).map_err(|e| e.to_string())
}

/// The headers to send to `next` after a redirect from `current`: to
/// another host, `Authorization` and `Cookie` stay behind (they were meant
/// for the first one).
pub(crate) fn headers_for(
    current: &Target,
    next: &Target,
    headers: &[(String, String)],
) -> Vec<(String, String)> {
    let same_host = current.host.eq_ignore_ascii_case(&next.host) && current.port == next.port;
    headers
        .iter()
        .filter(|(name, _)| {
            same_host
                || !(name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("cookie"))
        })
        .cloned()
        .collect()
}

/// Adds the URL's user and password as Basic `Authorization`, as browsers
/// and curl send them, unless `headers` has one already.
pub(crate) fn add_url_credentials(headers: &mut Vec<(String, String)>, target: &Target) {
    let Some((user, password)) = &target.userinfo else {
        return;
    };
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    {
        return;
    }
    headers.push((
        "Authorization".to_owned(),
        basic_authorization(user, password),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn locations_resolve_against_the_url_and_keep_tls() {
        let here = target("ws://a.test:8080/chat?x=1");
        assert_eq!(
            next_hop(&here, "/other").unwrap().url,
            "ws://a.test:8080/other"
        );
        assert_eq!(
            next_hop(&here, "http://b.test/x").unwrap().url,
            "ws://b.test/x"
        );
        assert_eq!(
            next_hop(&here, "wss://b.test/x").unwrap().url,
            "wss://b.test/x"
        );
        let secure = target("wss://a.test/chat");
        assert_eq!(
            next_hop(&secure, "https://b.test/y").unwrap().url,
            "wss://b.test/y"
        );
        assert!(next_hop(&secure, "ws://b.test/")
            .unwrap_err()
            .contains("wss to ws"));
        assert!(next_hop(&secure, "http://b.test/")
            .unwrap_err()
            .contains("wss to ws"));
        assert!(next_hop(&here, "ftp://b.test/")
            .unwrap_err()
            .contains("'ftp'"));
    }

    #[test]
    fn credentials_stay_with_their_host() {
        let headers = vec![
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            ("cookie".to_owned(), "a=1".to_owned()),
            ("Origin".to_owned(), "https://app".to_owned()),
        ];
        let a = target("ws://a.test/");
        let same = headers_for(&a, &target("ws://A.test/other"), &headers);
        assert_eq!(same, headers);
        let other = headers_for(&a, &target("ws://b.test/"), &headers);
        assert_eq!(other, [("Origin".to_owned(), "https://app".to_owned())]);
        let other_port = headers_for(&a, &target("ws://a.test:81/"), &headers);
        assert_eq!(other_port.len(), 1);
    }

    #[test]
    fn the_location_header_comes_with_a_refusal() {
        let head = b"HTTP/1.1 302 Found\r\nlocation: /next\r\nContent-Length: 0\r\n\r\n";
        let e = crate::proto::handshake::parse_response(head, "k", &[], 8192).unwrap_err();
        assert!(matches!(
            e,
            crate::proto::handshake::ResponseError::Status { code: 302, location: Some(l), .. } if l == "/next"
        ));
        let e =
            crate::proto::handshake::parse_response(b"HTTP/1.1 302 Found\r\n\r\n", "k", &[], 8192)
                .unwrap_err();
        assert!(matches!(
            e,
            crate::proto::handshake::ResponseError::Status { location: None, .. }
        ));
        assert!(is_redirect(307) && !is_redirect(304) && !is_redirect(300));
    }
}
