//! Outbound network for a run, by grant: the `wasi:http` hooks that check
//! every request against the template's allowed hosts before any connection
//! is made, add the granted headers and forbid them to the guest, resolve and
//! guard names, send through our own sender and meter the bodies; the
//! `wasi:sockets` check that lets TCP reach exactly the granted host:port
//! pairs; the host-written log line for every refusal; the audit row of
//! every call; the node's TLS roots.

mod guard;
mod lookup;
mod sender;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub(crate) use lookup::GrantedLookup;

use super::audit::Meter;
use super::journal::Journal;
use crate::model::GuestLimits;
use crate::grants::{Grants, HostPattern, PortPattern, Scheme};
use crate::secrets::SecretValue;
use crate::units::{format_duration, format_size_human};
use guard::is_internal;
use sender::{Bounds, Direction, Metered, Target, Watcher};

/// What one run may reach and read: its template's grants (already narrowed
/// by the job) and the values of the secrets they name.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Allowed hosts, granted headers, readable secrets.
    pub grants: Grants,
    /// The value of every secret the grants name (header placeholders and
    /// readable secrets), opened by the caller.
    pub secrets: BTreeMap<String, SecretValue>,
}

impl Capabilities {
    /// The value of a secret the guest may read (`None` for any other).
    pub(crate) fn readable(&self, name: &str) -> Option<&SecretValue> {
        self.grants.secrets.iter().any(|s| s == name).then(|| self.secrets.get(name)).flatten()
    }
}

/// Why the node's extra trusted roots could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or is not PEM.
    #[error("the CA file {path} cannot be used: {why}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS could not be configured: {0}")]
    Config(String),
}

/// The node's TLS client configuration: the public web roots plus the
/// certificates of `ca_file` (PEM), so private CAs work.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let bad = |why: String| TlsError::CaFile { path: path.display().to_string(), why };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("it is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad("it holds no CERTIFICATE block".into()));
        }
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            return Err(bad(format!("{ignored} of its certificates are not valid trust anchors")));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A header the host adds to requests matching its grant.
struct Injected {
    grant: usize,
    name: HeaderName,
    value: HeaderValue,
}

/// The network side of one run, shared by the `wasi:http` hooks, the socket
/// check, the name-lookup view and the requests in flight.
pub(crate) struct RunNet {
    template: String,
    journal: Arc<Mutex<Journal>>,
    limits: GuestLimits,
    granted: Option<Granted>,
}

/// What a run with grants carries besides.
struct Granted {
    caps: Arc<Capabilities>,
    headers: Vec<Injected>,
    tls: Arc<rustls::ClientConfig>,
    /// Addresses granted TCP names resolved to, and the ports their grants allow.
    tcp_resolved: Mutex<HashMap<IpAddr, Vec<PortPattern>>>,
    /// Open name lookups of granted TCP names: the stream's handle, the
    /// name, and the ports its grants allow.
    lookups: Mutex<HashMap<u32, (String, Vec<PortPattern>)>>,
}

/// The grants could not be prepared for a run: it fails before it starts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// A header names a secret the run was not given.
    #[error("the header `{header}` granted for {host} uses the secret `{secret}`, which does not exist (set it with `elihu secret set {secret}`)")]
    MissingSecret { header: String, host: String, secret: String },
    /// A secret's value cannot go in a header.
    #[error("the header `{header}` granted for {host} cannot carry the value of its secret (a newline or control character in it?)")]
    BadHeaderValue { header: String, host: String },
}

impl RunNet {
    /// The network state of a run whose template grants hosts; `None` when
    /// it grants none (then [`NetHooks`] makes one only if the guest tries).
    pub(crate) fn new(
        template: &str,
        journal: &Arc<Mutex<Journal>>,
        limits: GuestLimits,
        caps: Option<&Arc<Capabilities>>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Option<Arc<RunNet>>, PrepareError> {
        let granted = match caps {
            Some(caps) if !caps.grants.allowed_hosts.is_empty() => {
                let caps = caps.clone();
                let mut headers = Vec::new();
                for (grant, h) in caps.grants.headers.iter().enumerate() {
                    let rendered = h.value.render(|name| caps.secrets.get(name).map(SecretValue::expose)).map_err(|secret| {
                        PrepareError::MissingSecret { header: h.name.clone(), host: h.host.to_string(), secret }
                    })?;
                    let bad = || PrepareError::BadHeaderValue { header: h.name.clone(), host: h.host.to_string() };
                    let mut value = HeaderValue::from_str(&rendered).map_err(|_| bad())?;
                    value.set_sensitive(true);
                    let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
                    headers.push(Injected { grant, name, value });
                }
                Granted { caps, headers, tls: tls.clone(), tcp_resolved: Mutex::default(), lookups: Mutex::default() }
            }
            _ => return Ok(None),
        };
        let net = RunNet { template: template.to_string(), journal: journal.clone(), limits, granted: Some(granted) };
        Ok(Some(Arc::new(net)))
    }

    fn grants(&self) -> Option<&Grants> {
        self.granted.as_ref().map(|g| &g.caps.grants)
    }

    fn granted_list(&self) -> String {
        match self.grants() {
            Some(g) => g.allowed_hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", "),
            None => "none".into(),
        }
    }

    /// Whether the guest may set or see a header: never one the host injects.
    fn is_injected(&self, name: &HeaderName) -> bool {
        self.granted.as_ref().is_some_and(|g| g.headers.iter().any(|h| h.name == *name))
    }

    /// Counts an attempt against the run's request limit. `Err` once the
    /// limit is passed (the run then fails); the attempt that passes it is
    /// still recorded, later ones are not.
    fn count(&self, journal: &mut Journal, method: &str, target: &str) -> Result<(), ()> {
        if journal.violation.is_some() {
            return Err(());
        }
        let max = self.limits.max_requests;
        if journal.audit.len() >= max as usize {
            let why = format!("the run's limit of {max} outbound requests was reached");
            let at = journal.now_ms();
            journal.audit.denied(at, method, target.to_string(), why);
            journal.violate(format!(
                "the job made more than {max} outbound requests and connections (the limit max_requests)"
            ));
            return Err(());
        }
        Ok(())
    }

    /// Records and logs a refusal.
    fn refuse(&self, journal: &mut Journal, method: &str, target: String, why: String) {
        let at = journal.now_ms();
        journal.host_line(format!("outbound {method} {target} refused: {why}"));
        journal.audit.denied(at, method, target, why);
    }

    /// The grant check of one HTTP request: no I/O. On success the audit row
    /// is open and the granted headers are in the request.
    fn authorize(self: &Arc<Self>, request: &mut http::Request<WasiBody>) -> Result<Admitted, Error> {
        let uri = request.uri();
        let method = request.method().as_str().to_string();
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(Error::HttpProtocolError),
        };
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        let port = uri.port_u16().or(scheme.default_port()).unwrap_or(0);
        let target = format!("{}://{}:{port}{}", scheme.as_str(), host, uri.path());
        let mut journal = self.journal.lock().unwrap();
        let mut target = target;
        journal.redact(&mut target);
        if self.count(&mut journal, &method, &target).is_err() {
            return Err(Error::ConnectionLimitReached);
        }
        let Some(grant) = self.grants().and_then(|g| g.find(scheme, &host, port)) else {
            let why = format!(
                "template \"{}\" grants no such host (allowed: {})",
                self.template,
                self.granted_list()
            );
            self.refuse(&mut journal, &method, target, why);
            return Err(Error::HttpRequestDenied);
        };
        let literal = matches!(grant.host, HostPattern::Ip(_));
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let max_body = self.limits.max_request_body;
        if let Some(len) = declared.filter(|&len| len > max_body) {
            let why = format!(
                "the request body of {} is over the limit of {} (max_request_body_bytes)",
                format_size_human(len as usize),
                format_size_human(max_body as usize)
            );
            journal.violate(format!("an outbound request to {target} failed: {why}"));
            self.refuse(&mut journal, &method, target, why);
            return Err(Error::HttpRequestBodySize(Some(max_body)));
        }
        let meter = Arc::new(Meter::default());
        let at = journal.now_ms();
        let row = journal.audit.open(at, &method, target.clone(), meter.clone());
        drop(journal);
        if let Some(granted) = &self.granted {
            let grants = &granted.caps.grants;
            for injected in &granted.headers {
                if grants.headers[injected.grant].host.matches(scheme, &host, port) {
                    // The guest cannot set these names (they are forbidden to
                    // it); removing first is defence in depth.
                    request.headers_mut().remove(&injected.name);
                    request.headers_mut().insert(injected.name.clone(), injected.value.clone());
                }
            }
        }
        let tls_config = self.granted.as_ref().map(|g| g.tls.clone()).ok_or(Error::HttpRequestDenied)?;
        Ok(Admitted {
            row: Row { net: self.clone(), index: row },
            meter,
            host,
            port,
            tls: scheme == Scheme::Https,
            tls_config,
            literal,
            target,
        })
    }

    /// Resolves a granted name and keeps the addresses the guard allows.
    async fn resolve(&self, admitted: &Admitted) -> Result<Vec<SocketAddr>, Error> {
        if admitted.literal {
            let ip: IpAddr = admitted.host.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| Error::HttpRequestUriInvalid)?;
            return Ok(vec![SocketAddr::new(ip, admitted.port)]);
        }
        let lookup = tokio::net::lookup_host((admitted.host.as_str(), admitted.port));
        let resolved: Vec<SocketAddr> = match tokio::time::timeout(self.limits.connect_timeout, lookup).await {
            Err(_) => {
                admitted.row.fail("the name lookup timed out".into());
                return Err(Error::DnsTimeout);
            }
            Ok(Err(e)) => {
                admitted.row.fail(format!("the name does not resolve: {e}"));
                return Err(Error::DnsError { rcode: Some("name does not resolve".into()), info_code: None });
            }
            Ok(Ok(addrs)) => addrs.collect(),
        };
        let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|a| !is_internal(a.ip())).collect();
        if allowed.is_empty() {
            let ip = resolved.first().map(|a| a.ip().to_string()).unwrap_or_default();
            let why = format!(
                "{} resolves to {ip}, an internal address; a grant must name an internal address literally (e.g. {}://{}:{}) to reach it",
                admitted.host,
                if admitted.tls { "https" } else { "http" },
                if ip.contains(':') { format!("[{ip}]") } else { ip.clone() },
                admitted.port,
            );
            let mut journal = self.journal.lock().unwrap();
            journal.host_line(format!("outbound request to {} refused: {why}", admitted.target));
            journal.audit.refuse(admitted.row.index, why);
            return Err(Error::DestinationIpProhibited);
        }
        Ok(allowed)
    }

    /// Sends an admitted request and wraps the response body in the meter.
    async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        admitted: Admitted,
    ) -> Result<(http::Response<WasiBody>, sender::Io), Error> {
        let addrs = match self.resolve(&admitted).await {
            Ok(addrs) => addrs,
            Err(e) => return Err(sender::drain(request.into_body(), self.limits.max_request_body, e).await),
        };
        let options = options.unwrap_or_default();
        let connect = options.connect_timeout.map_or(self.limits.connect_timeout, |t| t.min(self.limits.connect_timeout));
        let bounds = Bounds {
            connect,
            first_byte: options.first_byte_timeout,
            between_bytes: options.between_bytes_timeout,
            max_request_body: self.limits.max_request_body,
            max_response_body: self.limits.max_response_body,
        };
        let target = Target { host: admitted.host.clone(), tls: admitted.tls, addrs };
        let max_response = bounds.max_response_body;
        let between_bytes = bounds.between_bytes;
        let (response, io) = match sender::send(request, target, admitted.tls_config.clone(), bounds, admitted.meter.clone()).await {
            Ok(sent) => sent,
            Err(e) => {
                if let Error::HttpRequestBodySize(Some(limit)) = e {
                    admitted.row.violate(format!(
                        "an outbound request to {} failed: the request body is over the limit of {} (max_request_body_bytes)",
                        admitted.target,
                        format_size_human(limit as usize)
                    ));
                }
                admitted.row.fail(describe(&e));
                return Err(e);
            }
        };
        let status = response.status().as_u16();
        self.journal.lock().unwrap().audit.status(admitted.row.index, status);
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared.filter(|&len| len > max_response) {
            let mut row = admitted.row;
            row.over_declared(len, max_response);
            return Err(Error::HttpResponseBodySize(Some(len)));
        }
        let meter = admitted.meter;
        let row: Box<dyn Watcher> = Box::new(admitted.row);
        let response = response.map(|body| {
            Metered::new(body, max_response, meter, Direction::Received, Some(row)).idle_after(between_bytes).boxed_unsync()
        });
        Ok((response, io))
    }

    /// The socket check of a TCP use. Connections go only to granted
    /// host:port pairs (literal addresses, or addresses a granted name
    /// resolved to through [`GrantedLookup`]); the implicit bind that precedes
    /// every connect is allowed; nothing may listen, accept or use UDP.
    fn check_socket(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        let ip = addr.ip().to_canonical();
        match usage {
            SocketAddrUse::TcpBind => ip.is_unspecified() && addr.port() == 0,
            SocketAddrUse::TcpConnect => {
                let target = match ip {
                    IpAddr::V6(v6) => format!("tcp://[{v6}]:{}", addr.port()),
                    IpAddr::V4(v4) => format!("tcp://{v4}:{}", addr.port()),
                };
                let allowed = self.granted.as_ref().is_some_and(|g| {
                    g.caps.grants.tcp_literal_allows(ip, addr.port())
                        || g.tcp_resolved.lock().unwrap().get(&ip).is_some_and(|ports| ports.iter().any(|p| p.matches(addr.port())))
                });
                let mut journal = self.journal.lock().unwrap();
                if self.count(&mut journal, "CONNECT", &target).is_err() {
                    return false;
                }
                if allowed {
                    let at = journal.now_ms();
                    journal.audit.connected(at, target);
                } else {
                    let why = format!(
                        "template \"{}\" grants no tcp:// entry for it (allowed: {})",
                        self.template,
                        self.granted_list()
                    );
                    self.refuse(&mut journal, "CONNECT", target, why);
                }
                allowed
            }
            _ => false,
        }
    }
}

/// A request that passed the grant check.
struct Admitted {
    row: Row,
    meter: Arc<Meter>,
    host: String,
    port: u16,
    tls: bool,
    tls_config: Arc<rustls::ClientConfig>,
    literal: bool,
    target: String,
}

/// The audit row of one request in flight: closed when dropped (with the
/// response body, or with the run).
struct Row {
    net: Arc<RunNet>,
    index: usize,
}

impl Row {
    fn fail(&self, error: String) {
        self.net.journal.lock().unwrap().audit.fail(self.index, error);
    }

    fn violate(&self, message: String) {
        self.net.journal.lock().unwrap().violate(message);
    }

    fn over_declared(&mut self, len: u64, max: u64) {
        let why = format!(
            "the response body of {} is over the limit of {} (max_response_body_bytes)",
            format_size_human(len as usize),
            format_size_human(max as usize)
        );
        self.record_over(why);
    }

    fn record_over(&mut self, why: String) {
        let mut journal = self.net.journal.lock().unwrap();
        let target = journal.audit.target(self.index);
        journal.violate(format!("an outbound request to {target} failed: {why}"));
        journal.audit.fail(self.index, why);
    }
}

impl Watcher for Row {
    fn over(&mut self, limit: u64) {
        let why = format!(
            "the response body is over the limit of {} (max_response_body_bytes)",
            format_size_human(limit as usize)
        );
        self.record_over(why);
    }

    fn stalled(&mut self, after: Duration) {
        self.fail(format!("no response bytes for {}", format_duration(after)));
    }

    fn failed(&mut self, error: &Error) {
        self.fail(describe(error));
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        if let Ok(mut journal) = self.net.journal.lock() {
            journal.audit.close(self.index);
        }
    }
}

/// An error of a call, for the audit.
fn describe(error: &Error) -> String {
    match error {
        Error::Connect(e) => format!("connect failed: {e}"),
        Error::ConnectionTimeout => "the connection timed out".into(),
        Error::ConnectionReadTimeout => "the response timed out".into(),
        Error::Tls(e) => format!("TLS failed: {e}"),
        Error::Hyper(e) => format!("HTTP failed: {e}"),
        other => other.to_string(),
    }
}

/// The network side of one run as its sandbox holds it: the run's
/// [`RunNet`] when its template grants hosts; otherwise what it takes to
/// make one the first time the guest tries a call anyway (so a run that
/// makes no call pays for none of it).
pub(crate) struct NetHooks {
    net: Option<Arc<RunNet>>,
    template: String,
    journal: Arc<Mutex<Journal>>,
}

impl NetHooks {
    pub(crate) fn new(net: Option<Arc<RunNet>>, template: String, journal: Arc<Mutex<Journal>>) -> Self {
        NetHooks { net, template, journal }
    }

    /// The run's network state, made (with no grants) if it had none.
    pub(crate) fn net(&mut self) -> &Arc<RunNet> {
        self.net.get_or_insert_with(|| {
            let limits = *self.journal.lock().unwrap().limits();
            Arc::new(RunNet { template: self.template.clone(), journal: self.journal.clone(), limits, granted: None })
        })
    }

    /// Whether TCP may be used at all, and name lookup.
    pub(crate) fn tcp(&self) -> (bool, bool) {
        match self.net.as_ref().and_then(|n| n.grants()) {
            Some(g) => (g.has_tcp(), g.has_tcp_names()),
            None => (false, false),
        }
    }

    /// The run's network state if it has one yet (made at the start when its
    /// template grants hosts, or late by [`net`](Self::net)); the socket
    /// check reads its grants.
    pub(crate) fn granted(&self) -> Option<&Arc<RunNet>> {
        self.net.as_ref()
    }
}

impl WasiHttpHooks for NetHooks {
    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name) || self.net.as_ref().is_some_and(|n| n.is_injected(name))
    }

    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        let net = self.net.clone();
        Arc::new(move |name| {
            wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name) || net.as_ref().is_some_and(|n| n.is_injected(name))
        })
    }

    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        None
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, sender::Io), Error>> + Send> {
        let net = self.net().clone();
        match net.authorize(&mut request) {
            Err(e) => {
                let limit = net.limits.max_request_body;
                Box::new(async move { Err(sender::drain(request.into_body(), limit, e).await) })
            }
            Ok(admitted) => Box::new(net.send(request, options, admitted)),
        }
    }
}

/// The `wasi:sockets` address check of a run.
pub(crate) fn socket_check(
    net: Arc<RunNet>,
) -> impl Fn(SocketAddr, SocketAddrUse) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + Sync>> + Send + Sync + 'static {
    move |addr, usage| {
        let allowed = net.check_socket(addr, usage);
        Box::pin(async move { allowed })
    }
}
