//! TLS settings: [`ClientTls`] for `wss` clients, [`ServerTls`] for `wss`
//! servers. Both wrap `native-tls`, whose types stay out of the public API,
//! so that options can be added here without breaking anyone.

use crate::error::Error;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The TLS settings of a `wss` client: which certificates it trusts, the
/// identity it presents when the server asks for one, and whether it checks
/// the server's certificate and host name. Give them to a client with
/// [`Config::client_tls`](crate::Config::client_tls).
///
/// The default trusts the system's roots, presents no identity, and checks
/// the certificate chain and the host name. Change it with one setter per
/// option, each named like its option; those that read certificates or keys
/// return an [`Error::InvalidArgument`] when the bytes cannot be used, so a mistake
/// shows at the call, before any connection is made:
///
/// ```
/// use airws::{ClientTls, Config, WebSocket};
///
/// # let ca_pem = include_bytes!("../tests/tls/ca.pem");
/// let tls = ClientTls::new().add_root_certificate_pem(ca_pem)?;
/// let ws = WebSocket::with_config(Config::default().client_tls(tls));
/// # drop(ws);
/// # Ok::<(), airws::Error>(())
/// ```
///
/// A clone is cheap (certificates and keys are reference-counted handles),
/// and clones share the TLS context built from the settings on the first
/// connection: every later connection reuses it. A setter that changes the
/// settings starts a new one.
///
/// # After a `certificateError`
///
/// When the server's certificate or host name does not pass the checks and
/// a `certificateError` listener exists, the client connects again with
/// these same settings, the checks turned off, to ask the listeners (see
/// [`SecurityErrorEvent::CERTIFICATE_ERROR`](crate::SecurityErrorEvent::CERTIFICATE_ERROR)):
/// the second connection presents the same identity.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientTls {
    roots: Vec<native_tls::Certificate>,
    system_roots: bool,
    identity: Option<native_tls::Identity>,
    accept_invalid_certs: bool,
    accept_invalid_hostnames: bool,
    min_version: TlsVersion,
    /// The connector built from the settings above, on first use; every
    /// setter starts a new one.
    connector: Arc<OnceLock<native_tls::TlsConnector>>,
}

/// A TLS protocol version, for [`ClientTls::min_protocol_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246): the default minimum.
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    fn protocol(self) -> native_tls::Protocol {
        match self {
            TlsVersion::Tls12 => native_tls::Protocol::Tlsv12,
            TlsVersion::Tls13 => native_tls::Protocol::Tlsv13,
        }
    }
}

impl Default for ClientTls {
    /// The system's roots, no identity, certificate and host name checks on.
    fn default() -> Self {
        ClientTls {
            roots: Vec::new(),
            system_roots: true,
            identity: None,
            accept_invalid_certs: false,
            accept_invalid_hostnames: false,
            min_version: TlsVersion::Tls12,
            connector: Arc::default(),
        }
    }
}

impl fmt::Debug for ClientTls {
    /// The options, without the certificates' and keys' bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("root_certificates", &self.roots.len())
            .field("system_roots", &self.system_roots)
            .field("identity", &self.identity.is_some())
            .field("danger_accept_invalid_certs", &self.accept_invalid_certs)
            .field(
                "danger_accept_invalid_hostnames",
                &self.accept_invalid_hostnames,
            )
            .field("min_protocol_version", &self.min_version)
            .finish()
    }
}

impl ClientTls {
    /// The default settings: the system's roots, no identity, certificate
    /// and host name checks on.
    pub fn new() -> ClientTls {
        ClientTls::default()
    }

    /// Changes an option; the connector built for the old settings is not
    /// used for the new ones.
    fn set(mut self, set: impl FnOnce(&mut ClientTls)) -> Self {
        set(&mut self);
        self.connector = Arc::default();
        self
    }

    /// Trusts every certificate in `pem` (one or more `-----BEGIN
    /// CERTIFICATE-----` blocks, such as a CA bundle) as a root, in addition
    /// to those trusted already. Each call adds to the list.
    ///
    /// [`Error::InvalidArgument`] when `pem` holds no certificate or one that
    /// cannot be read.
    pub fn add_root_certificate_pem(self, pem: &[u8]) -> Result<Self, Error> {
        let what = "ClientTls::add_root_certificate_pem";
        let certs = native_tls::Certificate::stack_from_pem(pem)
            .map_err(|e| Error::argument(format!("{what}: invalid PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::argument(format!(
                "{what}: no certificate found (expected a -----BEGIN CERTIFICATE----- block)"
            )));
        }
        Ok(self.set(|t| t.roots.extend(certs)))
    }

    /// Whether the system's roots are trusted too, besides those added with
    /// [`add_root_certificate_pem`](Self::add_root_certificate_pem).
    /// Default true; false trusts the added roots alone.
    #[must_use]
    pub fn system_roots(self, use_them: bool) -> Self {
        self.set(|t| t.system_roots = use_them)
    }

    /// The identity presented to a server that asks for a client
    /// certificate: `cert_chain_pem` holds the client's certificate first,
    /// then the intermediate certificates that lead to the root the server
    /// trusts; `key_pem` the certificate's private key, unencrypted PKCS#8
    /// (`-----BEGIN PRIVATE KEY-----`). Replaces an identity set before.
    ///
    /// [`Error::InvalidArgument`] when either cannot be read, the key is in another
    /// format, or the key does not belong to the certificate.
    pub fn identity_pem(self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let identity = identity_from_pem("ClientTls::identity_pem", cert_chain_pem, key_pem)?;
        Ok(self.set(|t| t.identity = Some(identity)))
    }

    /// Like [`identity_pem`](Self::identity_pem), from a PKCS#12 archive
    /// (`.p12`, `.pfx`) holding the key, its certificate and the chain,
    /// encrypted with `password`.
    ///
    /// [`Error::InvalidArgument`] when the archive cannot be read or decrypted, or
    /// its key does not belong to its certificate.
    pub fn identity_pkcs12(self, der: &[u8], password: &str) -> Result<Self, Error> {
        let identity = identity_from_pkcs12("ClientTls::identity_pkcs12", der, password)?;
        Ok(self.set(|t| t.identity = Some(identity)))
    }

    /// **Dangerous**: accepts any certificate from the server, expired,
    /// self-signed or issued by anyone, without a `certificateError`. Anyone
    /// between the client and the server can then read and change the
    /// traffic. For tests against a server whose certificate you made; to
    /// trust one server, add its CA with
    /// [`add_root_certificate_pem`](Self::add_root_certificate_pem) instead.
    /// Default false.
    #[must_use]
    pub fn danger_accept_invalid_certs(self, accept: bool) -> Self {
        self.set(|t| t.accept_invalid_certs = accept)
    }

    /// **Dangerous**: accepts a valid certificate issued for another host
    /// name than the URL's, without a `certificateError`; any holder of a
    /// certificate from a trusted root can then pose as the server.
    /// Default false.
    #[must_use]
    pub fn danger_accept_invalid_hostnames(self, accept: bool) -> Self {
        self.set(|t| t.accept_invalid_hostnames = accept)
    }

    /// The oldest TLS version the client accepts. Default
    /// [`TlsVersion::Tls12`] (TLS 1.0 and 1.1 are deprecated by RFC 8996);
    /// [`TlsVersion::Tls13`] refuses servers that cannot speak 1.3. Kept by
    /// the connection made after a `certificateError` and through a proxy.
    #[must_use]
    pub fn min_protocol_version(self, version: TlsVersion) -> Self {
        self.set(|t| t.min_version = version)
    }

    /// The same settings with the certificate and host name checks off: the
    /// retry after a certificate failure, which keeps the roots and the
    /// identity.
    pub(crate) fn unverified(&self) -> ClientTls {
        self.clone()
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true)
    }

    /// The connector for these settings, built once and then shared.
    pub(crate) fn connector(&self) -> Result<native_tls::TlsConnector, native_tls::Error> {
        if let Some(connector) = self.connector.get() {
            return Ok(connector.clone());
        }
        let connector = self.build_connector()?;
        // Another thread may have built one meanwhile: either will do.
        Ok(self.connector.get_or_init(|| connector).clone())
    }

    fn build_connector(&self) -> Result<native_tls::TlsConnector, native_tls::Error> {
        let mut builder = native_tls::TlsConnector::builder();
        builder
            .disable_built_in_roots(!self.system_roots)
            .danger_accept_invalid_certs(self.accept_invalid_certs)
            .danger_accept_invalid_hostnames(self.accept_invalid_hostnames)
            .min_protocol_version(Some(self.min_version.protocol()));
        for root in &self.roots {
            builder.add_root_certificate(root.clone());
        }
        if let Some(identity) = &self.identity {
            builder.identity(identity.clone());
        }
        builder.build()
    }
}

/// The TLS settings of a `wss` server: its identity, the certificate chain
/// it presents and the chain's private key. Give them to
/// [`ServerSocket::with_tls`](crate::ServerSocket::with_tls), whose accepted
/// sockets [`start_server`](crate::WebSocket::start_server) then serves as
/// wss (or to [`WebSocket::start_server_tls`](crate::WebSocket::start_server_tls)
/// for a socket accepted otherwise):
///
/// ```no_run
/// use airws::{Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, ServerTls, WebSocket};
///
/// let tls = ServerTls::from_pem(
///     &std::fs::read("server.pem")?, // the server's certificate, then the intermediates
///     &std::fs::read("server.key")?, // its private key, PKCS#8
/// )?;
/// let server = ServerSocket::with_tls(tls);
/// server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
///     let ws = WebSocket::new();
///     // ... listeners, and keep `ws` in your collection ...
///     let _ = ws.start_server(e.socket());
/// });
/// server.bind(9443, "0.0.0.0")?;
/// server.listen()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The TLS context is built once, when the `ServerTls` is made, and shared
/// by its clones and by every connection that uses it; a clone is cheap.
///
/// `native-tls` gives a server no way to ask clients for a certificate, so
/// a `ServerTls` does not either.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerTls {
    acceptor: Arc<native_tls::TlsAcceptor>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A server identity from PEM: `cert_chain_pem` holds the server's
    /// certificate first, then the intermediate certificates that lead to
    /// the root its clients trust; `key_pem` the certificate's private key,
    /// unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// [`Error::InvalidArgument`] when either cannot be read, the key is in another
    /// format, or the key does not belong to the certificate.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerTls, Error> {
        let what = "ServerTls::from_pem";
        ServerTls::new(what, identity_from_pem(what, cert_chain_pem, key_pem)?)
    }

    /// A server identity from a PKCS#12 archive (`.p12`, `.pfx`) holding the
    /// key, its certificate and the chain, encrypted with `password`.
    ///
    /// [`Error::InvalidArgument`] when the archive cannot be read or decrypted, or
    /// its key does not belong to its certificate.
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<ServerTls, Error> {
        let what = "ServerTls::from_pkcs12";
        ServerTls::new(what, identity_from_pkcs12(what, der, password)?)
    }

    fn new(what: &str, identity: native_tls::Identity) -> Result<ServerTls, Error> {
        let acceptor = native_tls::TlsAcceptor::new(identity)
            .map_err(|e| Error::argument(format!("{what}: cannot serve TLS with it: {e}")))?;
        Ok(ServerTls {
            acceptor: Arc::new(acceptor),
        })
    }

    /// The acceptor every connection of this server uses.
    pub(crate) fn acceptor(&self) -> &native_tls::TlsAcceptor {
        &self.acceptor
    }
}

const PKCS8_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";

/// An identity from a PEM certificate chain and a PKCS#8 PEM key. `what`
/// names the caller in the error.
fn identity_from_pem(
    what: &str,
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<native_tls::Identity, Error> {
    let certs = native_tls::Certificate::stack_from_pem(cert_chain_pem)
        .map_err(|e| Error::argument(format!("{what}: invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::argument(format!(
            "{what}: no certificate found in the chain (expected a -----BEGIN CERTIFICATE----- \
             block)"
        )));
    }
    let key = pkcs8_block(what, key_pem)?;
    let identity = native_tls::Identity::from_pkcs8(cert_chain_pem, key)
        .map_err(|e| Error::argument(format!("{what}: invalid private key: {e}")))?;
    check_identity(what, identity)
}

/// The key's PKCS#8 block, from its `BEGIN` line on (text before it, such
/// as the attributes some tools write, is skipped); a clear error for a key
/// in another format.
fn pkcs8_block<'a>(what: &str, key_pem: &'a [u8]) -> Result<&'a [u8], Error> {
    let find = |label: &str| {
        key_pem
            .windows(label.len())
            .position(|w| w == label.as_bytes())
    };
    if let Some(start) = find(PKCS8_BEGIN) {
        return Ok(&key_pem[start..]);
    }
    let found = [
        (
            "-----BEGIN RSA PRIVATE KEY-----",
            "an RSA key in PKCS#1 form",
        ),
        ("-----BEGIN EC PRIVATE KEY-----", "an EC key in SEC 1 form"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----", "encrypted"),
    ]
    .into_iter()
    .find_map(|(label, name)| find(label).map(|_| name));
    Err(Error::argument(match found {
        Some(name) => format!(
            "{what}: the key is {name}; an unencrypted PKCS#8 key ({PKCS8_BEGIN}) is needed \
             (`openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8` converts it)"
        ),
        None => format!("{what}: no private key found (expected a {PKCS8_BEGIN} block)"),
    }))
}

/// An identity from a PKCS#12 archive.
fn identity_from_pkcs12(
    what: &str,
    der: &[u8],
    password: &str,
) -> Result<native_tls::Identity, Error> {
    let identity = native_tls::Identity::from_pkcs12(der, password).map_err(|e| {
        Error::argument(format!(
            "{what}: cannot read the PKCS#12 archive (not one, or a wrong password): {e}"
        ))
    })?;
    check_identity(what, identity)
}

/// Checks that the identity's key belongs to its certificate. Not every
/// backend's acceptor does (OpenSSL's takes any key, and each handshake then
/// fails), while each backend's connector refuses such a pair when it is
/// built; so a connector is built with it, trusting no root.
fn check_identity(
    what: &str,
    identity: native_tls::Identity,
) -> Result<native_tls::Identity, Error> {
    native_tls::TlsConnector::builder()
        .identity(identity.clone())
        .disable_built_in_roots(true)
        .build()
        .map_err(|e| {
            Error::argument(format!(
                "{what}: the key and the certificate cannot be used together (is it the \
                 certificate's key?): {e}"
            ))
        })?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = include_bytes!("../tests/tls/ca.pem");
    const CERT: &[u8] = include_bytes!("../tests/tls/localhost.pem");
    const KEY: &[u8] = include_bytes!("../tests/tls/localhost.key");
    const OTHER_KEY: &[u8] = include_bytes!("../tests/tls/wrong-host.key");
    const P12: &[u8] = include_bytes!("../tests/tls/localhost.p12");
    const P12_PASSWORD: &str = "airws test";

    fn argument_error<T: fmt::Debug>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::InvalidArgument { message, .. }) => message,
            other => panic!("expected an ArgumentError, got {other:?}"),
        }
    }

    #[test]
    fn the_default_trusts_the_system_and_checks_everything() {
        let tls = ClientTls::new();
        assert!(tls.roots.is_empty());
        assert!(tls.system_roots);
        assert!(tls.identity.is_none());
        assert!(!tls.accept_invalid_certs);
        assert!(!tls.accept_invalid_hostnames);
        assert_eq!(tls.min_version, TlsVersion::Tls12);
        assert_eq!(
            format!("{tls:?}"),
            "ClientTls { root_certificates: 0, system_roots: true, identity: false, \
             danger_accept_invalid_certs: false, danger_accept_invalid_hostnames: false, \
             min_protocol_version: Tls12 }"
        );
    }

    #[test]
    fn the_setters_set_their_options() {
        let tls = ClientTls::new()
            .add_root_certificate_pem(CA)
            .expect("CA")
            .add_root_certificate_pem(&[CA, CERT].concat())
            .expect("bundle")
            .system_roots(false)
            .identity_pem(CERT, KEY)
            .expect("identity")
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
        assert_eq!(tls.roots.len(), 3);
        assert!(!tls.system_roots);
        assert!(tls.identity.is_some());
        assert!(tls.accept_invalid_certs);
        assert!(tls.accept_invalid_hostnames);
        tls.connector().expect("a connector");
        let tls = ClientTls::new()
            .identity_pkcs12(P12, P12_PASSWORD)
            .expect("PKCS#12 identity");
        assert!(tls.identity.is_some());
    }

    #[test]
    fn the_unverified_retry_keeps_the_roots_and_the_identity() {
        let tls = ClientTls::new()
            .add_root_certificate_pem(CA)
            .expect("CA")
            .system_roots(false)
            .identity_pem(CERT, KEY)
            .expect("identity")
            .min_protocol_version(TlsVersion::Tls13);
        let retry = tls.unverified();
        assert!(retry.accept_invalid_certs && retry.accept_invalid_hostnames);
        assert_eq!(
            retry.min_version,
            TlsVersion::Tls13,
            "the minimum version is kept"
        );
        assert_eq!(retry.roots.len(), 1);
        assert!(!retry.system_roots);
        assert!(retry.identity.is_some(), "the client identity is kept");
        // The settings it came from are unchanged, and so is their connector.
        assert!(!tls.accept_invalid_certs && !tls.accept_invalid_hostnames);
        assert!(!Arc::ptr_eq(&tls.connector, &retry.connector));
        retry.connector().expect("the retry's connector");
    }

    #[test]
    fn the_connector_is_built_once_and_a_setter_starts_a_new_one() {
        let tls = ClientTls::new();
        let copy = tls.clone();
        tls.connector().expect("connector");
        assert!(copy.connector.get().is_some(), "clones share the connector");
        let changed = copy.danger_accept_invalid_hostnames(true);
        assert!(changed.connector.get().is_none());
        assert!(tls.connector.get().is_some());
    }

    #[test]
    fn roots_that_cannot_be_read_are_an_argument_error() {
        let text = argument_error(ClientTls::new().add_root_certificate_pem(b"not a certificate"));
        assert!(text.contains("no certificate found"), "{text}");
        let broken = [
            CA,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ]
        .concat();
        let text = argument_error(ClientTls::new().add_root_certificate_pem(&broken));
        assert!(
            text.starts_with("ClientTls::add_root_certificate_pem: invalid PEM certificate"),
            "{text}"
        );
    }

    #[test]
    fn identities_that_cannot_be_used_are_an_argument_error() {
        let text = argument_error(ClientTls::new().identity_pem(CERT, OTHER_KEY));
        assert!(text.contains("cannot be used together"), "{text}");
        let text = argument_error(ServerTls::from_pem(CERT, OTHER_KEY));
        assert!(text.starts_with("ServerTls::from_pem: "), "{text}");
        assert!(text.contains("cannot be used together"), "{text}");

        let text = argument_error(ServerTls::from_pem(b"", KEY));
        assert!(text.contains("no certificate found"), "{text}");
        let text = argument_error(ServerTls::from_pem(CERT, b"nothing"));
        assert!(text.contains("no private key found"), "{text}");
        let pkcs1 = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let text = argument_error(ServerTls::from_pem(CERT, pkcs1));
        assert!(
            text.contains("PKCS#1") && text.contains("openssl pkcs8"),
            "{text}"
        );
        let text = argument_error(ServerTls::from_pem(
            CERT,
            b"-----BEGIN PRIVATE KEY-----\nxx\n",
        ));
        assert!(text.contains("invalid private key"), "{text}");

        let text = argument_error(ServerTls::from_pkcs12(P12, "wrong password"));
        assert!(text.starts_with("ServerTls::from_pkcs12: "), "{text}");
        assert!(text.contains("wrong password"), "{text}");
        let text = argument_error(ClientTls::new().identity_pkcs12(b"garbage", P12_PASSWORD));
        assert!(text.contains("cannot read the PKCS#12 archive"), "{text}");
    }

    #[test]
    fn a_key_after_other_text_is_found() {
        let key = [b"Bag Attributes\n    localKeyID: 01\n".as_slice(), KEY].concat();
        ServerTls::from_pem(CERT, &key).expect("the key after its attributes");
    }

    #[test]
    fn a_server_identity_from_pem_or_pkcs12() {
        let tls = ServerTls::from_pem(CERT, KEY).expect("PEM");
        let copy = tls.clone();
        assert!(
            std::ptr::eq(tls.acceptor(), copy.acceptor()),
            "one acceptor"
        );
        assert_eq!(format!("{tls:?}"), "ServerTls { .. }");
        ServerTls::from_pkcs12(P12, P12_PASSWORD).expect("PKCS#12");
    }
}
