//! How a client reaches its server: directly, or through an HTTP proxy
//! (`CONNECT`), given in the `Config` or read from the environment.

use crate::error::Error;
use crate::target::{basic_authorization, url_credentials, url_host};
use std::fmt;

/// Whether and through which HTTP proxy a client connects (see
/// [`Config::proxy`](crate::Config::proxy)).
///
/// ```
/// use airws::{Config, Proxy};
///
/// // Through a proxy that wants a password:
/// let proxy = Proxy::http("http://alice:s3cret@proxy.example:3128")?;
/// let config = Config::default().proxy(proxy);
/// // Never through one, whatever the environment says:
/// let direct = Config::default().proxy(Proxy::None);
/// # let _ = (config, direct);
/// # Ok::<(), airws::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Proxy {
    /// The proxy the environment names, read at each `connect` as Python's
    /// `requests` reads it: `http_proxy` for `ws://`, `https_proxy` for
    /// `wss://`, `all_proxy` when that one is not set, each also in upper
    /// case (the lower case wins), and no proxy for the hosts `no_proxy`
    /// lists (names, which match their subdomains too, IP addresses, or `*`
    /// for all). The default.
    #[default]
    FromEnvironment,
    /// No proxy.
    None,
    /// This HTTP proxy.
    Http(HttpProxy),
}

/// An HTTP proxy that opens tunnels with `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Proxy-Authorization`, from the URL's user and password.
    pub(crate) authorization: Option<String>,
}

impl fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the credentials.
        f.debug_struct("HttpProxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.as_ref().map(|_| "..."))
            .finish()
    }
}

impl HttpProxy {
    /// `host:port`, as the proxy is named in messages.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Proxy {
    /// An HTTP proxy from its URL: `http://[user:password@]host[:port]`
    /// (port 80 when none is given; a URL without a scheme is taken as
    /// `http://`). The user and password are sent as Basic
    /// `Proxy-Authorization`. [`Error::InvalidArgument`] for a URL that
    /// cannot be parsed, has no host, or has another scheme (`https://`,
    /// `socks5://`: not supported).
    pub fn http(url: &str) -> Result<Proxy, Error> {
        parse_proxy_url(url, "proxy").map(Proxy::Http)
    }

    /// The proxy a client connecting to `host` over TLS (`tls`) or not
    /// goes through, if any.
    pub(crate) fn for_target(&self, host: &str, tls: bool) -> Result<Option<HttpProxy>, Error> {
        match self {
            Proxy::None => Ok(None),
            Proxy::Http(p) => Ok(Some(p.clone())),
            Proxy::FromEnvironment => from_environment(host, tls, &|name| std::env::var(name).ok()),
        }
    }
}

/// Parses a proxy URL; `what` names where it came from in errors.
fn parse_proxy_url(url: &str, what: &str) -> Result<HttpProxy, Error> {
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let parsed = url::Url::parse(&with_scheme)
        .map_err(|e| Error::argument(format!("{what}: invalid proxy URL '{url}': {e}")))?;
    if parsed.scheme() != "http" {
        return Err(Error::argument(format!(
            "{what}: proxy scheme '{}' in '{url}' is not supported (use an http:// proxy)",
            parsed.scheme()
        )));
    }
    let Some(host) = url_host(&parsed) else {
        return Err(Error::argument(format!(
            "{what}: no host in proxy URL '{url}'"
        )));
    };
    let authorization =
        url_credentials(&parsed).map(|(user, password)| basic_authorization(&user, &password));
    Ok(HttpProxy {
        host,
        port: parsed.port_or_known_default().unwrap_or(80),
        authorization,
    })
}

/// The first of `names` that is set (and not empty), with its name.
fn first_set(names: &[&str], var: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| ((*name).to_owned(), v.trim().to_owned()))
    })
}

/// The proxy the environment (read through `var`) names for `host`.
fn from_environment(
    host: &str,
    tls: bool,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<HttpProxy>, Error> {
    let scheme: &[&str] = if tls {
        &["https_proxy", "HTTPS_PROXY"]
    } else {
        &["http_proxy", "HTTP_PROXY"]
    };
    let Some((name, url)) =
        first_set(scheme, var).or_else(|| first_set(&["all_proxy", "ALL_PROXY"], var))
    else {
        return Ok(None);
    };
    if let Some((_, list)) = first_set(&["no_proxy", "NO_PROXY"], var) {
        if bypasses(&list, host) {
            return Ok(None);
        }
    }
    parse_proxy_url(&url, &format!("connect: the environment variable {name}")).map(Some)
}

/// Whether `no_proxy`'s list exempts `host`: `*`, the host itself, a
/// domain it is in (`example.com` or `.example.com` for
/// `api.example.com`), or its IP address.
fn bypasses(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or_default();
        // A port after a name or an IPv4 address is not compared.
        let entry = match entry.rsplit_once(':') {
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => entry,
        };
        let domain = entry.trim_start_matches('.');
        !domain.is_empty()
            && (host.eq_ignore_ascii_case(domain)
                || (host.len() > domain.len()
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn proxy_of(pairs: &[(&str, &str)], host: &str, tls: bool) -> Option<String> {
        from_environment(host, tls, &env(pairs))
            .expect("valid")
            .map(|p| p.address())
    }

    #[test]
    fn each_scheme_has_its_variable_and_all_proxy_is_the_fallback() {
        let vars = [
            ("http_proxy", "http://h:1"),
            ("https_proxy", "http://s:2"),
            ("all_proxy", "a:3"),
        ];
        assert_eq!(proxy_of(&vars, "x", false).as_deref(), Some("h:1"));
        assert_eq!(proxy_of(&vars, "x", true).as_deref(), Some("s:2"));
        assert_eq!(proxy_of(&vars[2..], "x", true).as_deref(), Some("a:3"));
        assert_eq!(proxy_of(&[], "x", true), None);
        // The lower case wins; an empty value is no value.
        let both = [
            ("HTTP_PROXY", "http://upper:1"),
            ("http_proxy", "http://lower:2"),
        ];
        assert_eq!(proxy_of(&both, "x", false).as_deref(), Some("lower:2"));
        let empty = [("http_proxy", " "), ("HTTP_PROXY", "http://upper:1")];
        assert_eq!(proxy_of(&empty, "x", false).as_deref(), Some("upper:1"));
    }

    #[test]
    fn no_proxy_exempts_names_domains_addresses_and_everything() {
        for (list, host, exempt) in [
            ("example.com", "example.com", true),
            ("example.com", "api.example.com", true),
            (".example.com", "api.example.com", true),
            (".example.com", "example.com", true),
            ("example.com", "notexample.com", false),
            ("example.com:8080", "example.com", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("::1", "::1", true),
            ("[::1]", "::1", true),
            ("a.test, b.test", "b.test", true),
            ("*", "anything", true),
            ("", "anything", false),
            ("EXAMPLE.com", "Api.Example.COM", true),
        ] {
            assert_eq!(bypasses(list, host), exempt, "{list:?} {host:?}");
        }
        let vars = [
            ("http_proxy", "http://h:1"),
            ("no_proxy", "localhost,.internal"),
        ];
        assert_eq!(proxy_of(&vars, "db.internal", false), None);
        assert_eq!(
            proxy_of(&vars, "example.com", false).as_deref(),
            Some("h:1")
        );
    }

    #[test]
    fn proxy_urls_take_credentials_and_refuse_other_schemes() {
        let Proxy::Http(p) = Proxy::http("http://al%20ice:p%40ss@proxy.test:3128").unwrap() else {
            panic!()
        };
        assert_eq!((p.host.as_str(), p.port), ("proxy.test", 3128));
        let expected = "Basic YWwgaWNlOnBAc3M=";
        assert_eq!(p.authorization.as_deref(), Some(expected));
        assert!(
            !format!("{p:?}").contains("Basic"),
            "no credentials in Debug"
        );
        let Proxy::Http(p) = Proxy::http("proxy.test").unwrap() else {
            panic!()
        };
        assert_eq!((p.port, p.authorization), (80, None));
        for bad in ["socks5://p:1080", "https://p:443", "http://"] {
            let e = Proxy::http(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{bad}: {e:?}");
        }
        let e = Proxy::http("socks5://p:1080").unwrap_err().to_string();
        assert!(e.contains("'socks5'"), "{e}");
        let e = from_environment("x", false, &env(&[("http_proxy", "socks5://p:1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http_proxy") && e.contains("socks5"), "{e}");
    }
}
