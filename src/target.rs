//! Where a client connects: its URL, checked and taken apart.

use crate::error::Error;

/// An HTTP token (RFC 7230 §3.2.6), as a subprotocol name must be.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Where a client connects, from its URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL as given.
    pub(crate) url: String,
    /// The host to resolve and to name in TLS (no brackets around IPv6).
    pub(crate) host: String,
    /// The port, 80 or 443 when the URL names none.
    pub(crate) port: u16,
    /// `wss`.
    pub(crate) tls: bool,
    /// The `Host` header: the host, with the port when it is not the default.
    pub(crate) host_header: String,
    /// The request target: path and query.
    pub(crate) resource: String,
    /// The URL's user name and password, percent-decoded: sent as Basic
    /// `Authorization`, as browsers and curl do.
    pub(crate) userinfo: Option<(String, String)>,
}

/// A URL's host, without the brackets of an IPv6 address.
pub(crate) fn url_host(parsed: &url::Url) -> Option<String> {
    match parsed.host()? {
        url::Host::Domain(d) => Some(d.to_owned()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

/// A URL's user name and password, percent-decoded, if it has either.
pub(crate) fn url_credentials(parsed: &url::Url) -> Option<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    (!parsed.username().is_empty() || parsed.password().is_some()).then(|| {
        (
            decode(parsed.username()),
            decode(parsed.password().unwrap_or_default()),
        )
    })
}

/// The value of a Basic `Authorization` (or `Proxy-Authorization`) header.
pub(crate) fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `connect`'s `ArgumentError` for `url`.
fn invalid(url: &str, message: String) -> Error {
    Error::InvalidUrl {
        url: url.to_owned(),
        message,
    }
}

impl Target {
    /// Checks a `ws://` or `wss://` URL; `ArgumentError` for any other.
    pub(crate) fn parse(url: &str) -> Result<Target, Error> {
        let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
        let tls = match parsed.scheme() {
            "ws" => false,
            "wss" => true,
            other => {
                return Err(invalid(
                    url,
                    format!("invalid protocol '{other}' (use ws:// or wss://)"),
                ));
            }
        };
        let Some(host) = url_host(&parsed) else {
            return Err(invalid(url, "no host".to_owned()));
        };
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_str = parsed.host_str().unwrap_or_default();
        let host_header = match parsed.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let mut resource = parsed.path().to_owned();
        if resource.is_empty() {
            resource.push('/');
        }
        if let Some(q) = parsed.query() {
            resource.push('?');
            resource.push_str(q);
        }
        let userinfo = url_credentials(&parsed);
        Ok(Target {
            url: url.to_owned(),
            host,
            port,
            tls,
            host_header,
            resource,
            userinfo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_path_and_host_header() {
        let t = Target::parse("wss://example.com").unwrap();
        assert_eq!((t.port, t.tls, t.resource.as_str()), (443, true, "/"));
        assert_eq!(t.host_header, "example.com");
        let t = Target::parse("ws://example.com").unwrap();
        assert_eq!((t.port, t.tls), (80, false));
        let t = Target::parse("ws://example.com:80/a").unwrap();
        assert_eq!((t.port, t.host_header.as_str()), (80, "example.com"));
        let t = Target::parse("ws://Example.COM:8080/chat?room=1&x=%20#frag").unwrap();
        assert_eq!(t.port, 8080);
        assert_eq!(t.host_header, "example.com:8080");
        assert_eq!(t.resource, "/chat?room=1&x=%20");
        let t = Target::parse("ws://[::1]:9001").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("::1", "[::1]:9001")
        );
        let t = Target::parse("wss://127.0.0.1:443/").unwrap();
        assert_eq!(t.host_header, "127.0.0.1");
    }

    #[test]
    fn user_and_password_are_taken_apart_and_decoded() {
        let t = Target::parse("ws://al%20ice:p%40ss@example.com/").unwrap();
        assert_eq!(t.userinfo, Some(("al ice".to_owned(), "p@ss".to_owned())));
        assert_eq!(t.host_header, "example.com");
        assert_eq!(Target::parse("ws://example.com/").unwrap().userinfo, None);
        let t = Target::parse("ws://bob@example.com/").unwrap();
        assert_eq!(t.userinfo, Some(("bob".to_owned(), String::new())));
    }

    #[test]
    fn invalid_urls_are_argument_errors() {
        for url in [
            "",
            "example.com",
            "http://example.com/",
            "ws://",
            "wss://:443/",
            "ftp://x/",
        ] {
            assert!(
                matches!(Target::parse(url), Err(Error::InvalidUrl { .. })),
                "{url:?} should be refused"
            );
        }
    }

    #[test]
    fn protocol_tokens() {
        assert!(is_token("chat.v2"));
        assert!(!is_token("two words"));
        assert!(!is_token("a,b"));
        assert!(!is_token(""));
    }
}
