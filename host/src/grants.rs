//! What a template lets its jobs reach: the allow-list of outbound hosts
//! (`https://api.example.com`, `https://*.example.com`, `tcp://smtp.example.com:587`),
//! the headers the host adds to requests for a granted host (with
//! `{{secret:NAME}}` placeholders), and the secrets a job may read. Parsing
//! and validation (every bad entry refused by name), matching a request or a
//! socket address against the list, and narrowing a template's list for one
//! job. No I/O.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A grant that could not be read or does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// An allow-list entry that does not parse.
    #[error(
        "the allowed host `{entry}` is not valid: {why}. Write it as scheme://host[:port] with scheme http, https or tcp, \
         e.g. `https://api.example.com`, `https://*.example.com`, `http://127.0.0.1:8080`, `tcp://smtp.example.com:587`"
    )]
    Entry {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        why: String,
    },
    /// A header grant that does not parse or does not fit its host.
    #[error("the header grant `{header}` is not valid: {why}")]
    Header {
        /// The header grant as given (`Name=Value`), with no secret values in it.
        header: String,
        /// What is wrong with it.
        why: String,
    },
    /// A secret name that is not valid.
    #[error(
        "`{0}` is not a valid secret name: use 1 to 64 letters, digits, `_` or `-`"
    )]
    SecretName(String),
    /// A job asked for a host its template does not grant.
    #[error(
        "the job asks for `{entry}`, which its template `{template}` does not grant (a job may only narrow its template's allowed hosts: {granted})"
    )]
    Widens {
        /// The job's entry.
        entry: String,
        /// The template's name.
        template: String,
        /// The template's entries, for the message.
        granted: String,
    },
}

/// The protocol of an allow-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP through `wasi:http`.
    Http,
    /// HTTPS (TLS) through `wasi:http`.
    Https,
    /// A TCP connection through `wasi:sockets`.
    Tcp,
}

impl Scheme {
    /// The scheme's name as written in an entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
        }
    }

    /// The port an entry without one means (none for `tcp`).
    pub fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http => Some(80),
            Scheme::Https => Some(443),
            Scheme::Tcp => None,
        }
    }
}

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// An IP address written literally: reached without name lookup and
    /// exempt from the forgery guard (the grant names the address).
    Ip(IpAddr),
    /// One DNS name, lowercase.
    Name(String),
    /// `*.SUFFIX`: every name under the suffix, at any depth, not the suffix itself.
    Subdomains(String),
}

impl HostPattern {
    /// Whether `host` (a name or an IP literal, any case, IPv6 with or
    /// without brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match self {
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h.to_canonical() == *ip),
            HostPattern::Name(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() + 1
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Whether every host this pattern matches is matched by `self`.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Ip(a), HostPattern::Ip(b)) => a == b,
            (HostPattern::Name(a), HostPattern::Name(b)) => a == b,
            (HostPattern::Subdomains(_), HostPattern::Name(b)) => self.matches(b),
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) => a == b || self.matches(b),
            _ => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            HostPattern::Ip(ip) => write!(f, "{ip}"),
            HostPattern::Name(name) => f.write_str(name),
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The port part of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortPattern {
    /// `:*`: every port.
    Any,
    /// One port.
    Port(u16),
}

impl PortPattern {
    /// Whether `port` matches.
    pub fn matches(self, port: u16) -> bool {
        match self {
            PortPattern::Any => true,
            PortPattern::Port(p) => p == port,
        }
    }
}

/// One allow-list entry: `scheme://host[:port]`, with no path, query or user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowedHost {
    /// http, https or tcp.
    pub scheme: Scheme,
    /// The host or hosts.
    pub host: HostPattern,
    /// The port or ports (an entry without a port means the scheme's default).
    pub port: PortPattern,
}

impl AllowedHost {
    /// Reads an entry, refusing anything malformed with the reason.
    pub fn parse(entry: &str) -> Result<AllowedHost, GrantError> {
        let bad = |why: &str| GrantError::Entry { entry: entry.to_string(), why: why.to_string() };
        if !entry.is_ascii() {
            return Err(bad("it is not ASCII (write international names in their punycode form, xn--…)"));
        }
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| bad("it has no scheme (`https://`, `http://` or `tcp://`)"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "tcp" => Scheme::Tcp,
            other => return Err(bad(&format!("the scheme `{other}` is not one of http, https, tcp"))),
        };
        if rest.contains(['/', '?', '#']) {
            return Err(bad("an entry names a host, never a path or query: remove everything from the first `/`"));
        }
        if rest.contains('@') {
            return Err(bad("an entry has no user name or password"));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains a space or a control character"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (ip, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address opened with `[` is not closed"))?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| bad(&format!("`{ip}` is not an IPv6 address")))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected `:port` after the IPv6 address"))?),
            };
            (HostPattern::Ip(IpAddr::V6(ip).to_canonical()), port)
        } else {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            (parse_host(host).map_err(|why| bad(&why))?, port)
        };
        let port = match port {
            None => match scheme.default_port() {
                Some(p) => PortPattern::Port(p),
                None => return Err(bad("a tcp:// entry needs a port (`tcp://smtp.example.com:587`, or `:*` for any port)")),
            },
            Some("*") => PortPattern::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad(&format!("the port `{p}` is not a number from 1 to 65535 or `*`"))),
                Ok(n) => PortPattern::Port(n),
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    /// Whether a request or connection to `host:port` over `scheme` is allowed.
    pub fn matches(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.scheme == scheme && self.port.matches(port) && self.host.matches(host)
    }

    /// Whether every destination `other` allows is allowed by `self`.
    pub fn covers(&self, other: &AllowedHost) -> bool {
        self.scheme == other.scheme
            && match (self.port, other.port) {
                (PortPattern::Any, _) => true,
                (PortPattern::Port(a), PortPattern::Port(b)) => a == b,
                (PortPattern::Port(_), PortPattern::Any) => false,
            }
            && self.host.covers(&other.host)
    }
}

/// A host part: an IPv4 literal, a DNS name or `*.name`.
fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host == "*" {
        return Err("a bare `*` would grant every host on the internet; name the hosts (`*.example.com` for every subdomain)".into());
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err("`*` may only stand alone as the first label (`*.example.com`)".into());
        }
        return check_name(suffix).map(HostPattern::Subdomains);
    }
    if host.contains('*') {
        return Err("`*` may only stand alone as the first label (`*.example.com`)".into());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(ip.to_canonical()));
    }
    check_name(host).map(HostPattern::Name)
}

/// A DNS name, lowercased: labels of letters, digits and `-`, not all digits
/// at the end (so `127.1` is refused rather than resolved to an address).
fn check_name(name: &str) -> Result<String, String> {
    if name.ends_with('.') {
        return Err(format!("`{name}` ends with a dot; leave it out"));
    }
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` has an empty label or one longer than 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{label}` is not a host name label (letters, digits and inner `-` only)"));
        }
    }
    if name.rsplit('.').next().is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("`{name}` is neither a full IP address nor a host name"));
    }
    Ok(name.to_ascii_lowercase())
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Port(p) if Some(p) == self.scheme.default_port() => Ok(()),
            PortPattern::Port(p) => write!(f, ":{p}"),
        }
    }
}

impl FromStr for AllowedHost {
    type Err = GrantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AllowedHost::parse(s)
    }
}

impl Serialize for AllowedHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowedHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AllowedHost::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One piece of a header value template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Secret(String),
}

/// A header value with `{{secret:NAME}}` placeholders, filled in by the host
/// for each request; the template (never the value) is what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl HeaderTemplate {
    /// Reads a value template; `{{` must open a `{{secret:NAME}}` placeholder.
    pub fn parse(text: &str) -> Result<HeaderTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or("a `{{` is never closed with `}}`")?;
            let inner = after[..close].trim();
            let name = inner
                .strip_prefix("secret:")
                .ok_or_else(|| format!("`{{{{{inner}}}}}` is not a placeholder; the only one is `{{{{secret:NAME}}}}`"))?
                .trim();
            check_secret_name(name).map_err(|e| e.to_string())?;
            pieces.push(Piece::Secret(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        for piece in &pieces {
            if let Piece::Text(t) = piece
                && http::HeaderValue::from_str(t).is_err()
            {
                return Err("the value contains a character a header cannot carry (a newline or control character)".into());
            }
        }
        Ok(HeaderTemplate { text: text.to_string(), pieces })
    }

    /// The secrets it names, in order.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Secret(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The value with each placeholder replaced by `lookup(name)`; `Err(name)`
    /// for the first secret `lookup` does not know.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Secret(name) => out.push_str(lookup(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(out)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A header the host adds to every request to hosts matching `host`. The
/// guest can neither set nor read a header of that name (for any host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "HeaderGrantText", into = "HeaderGrantText")]
pub struct HeaderGrant {
    /// The entry whose requests get the header: one of the template's
    /// `allowed_hosts`, http or https.
    #[schema(value_type = String, examples("https://api.example.com"))]
    pub host: AllowedHost,
    /// The header name, lowercase.
    pub name: String,
    /// The value, with `{{secret:NAME}}` placeholders.
    #[schema(value_type = String, examples("Bearer {{secret:stripe}}"))]
    pub value: HeaderTemplate,
}

#[derive(Serialize, Deserialize)]
struct HeaderGrantText {
    host: String,
    name: String,
    value: String,
}

impl TryFrom<HeaderGrantText> for HeaderGrant {
    type Error = GrantError;
    fn try_from(t: HeaderGrantText) -> Result<Self, GrantError> {
        let host = AllowedHost::parse(&t.host)?;
        HeaderGrant::new(host, &t.name, &t.value)
    }
}

impl From<HeaderGrant> for HeaderGrantText {
    fn from(h: HeaderGrant) -> Self {
        HeaderGrantText { host: h.host.to_string(), name: h.name, value: h.value.text }
    }
}

/// Headers a grant may never set: the connection's own framing and routing,
/// which the host writes itself.
const UNGRANTABLE_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "te",
    "trailer",
    "http2-settings",
];

impl HeaderGrant {
    /// A header grant for `host`, from a name and a value template.
    pub fn new(host: AllowedHost, name: &str, value: &str) -> Result<HeaderGrant, GrantError> {
        let bad = |why: String| GrantError::Header { header: format!("{name}={value}"), why };
        if host.scheme == Scheme::Tcp {
            return Err(bad(format!("headers go with http or https entries, not with `{host}`")));
        }
        let parsed = http::HeaderName::from_str(name.trim())
            .map_err(|_| bad(format!("`{name}` is not a header name")))?;
        if UNGRANTABLE_HEADERS.contains(&parsed.as_str()) {
            return Err(bad(format!("`{parsed}` is written by the host itself and cannot be granted")));
        }
        let value = HeaderTemplate::parse(value).map_err(bad)?;
        Ok(HeaderGrant { host, name: parsed.as_str().to_string(), value })
    }

    /// Reads `Name=Value` (or `Name: Value`) for `host`.
    pub fn parse(host: AllowedHost, text: &str) -> Result<HeaderGrant, GrantError> {
        let split = match (text.find('='), text.find(':')) {
            (Some(e), Some(c)) => Some(e.min(c)),
            (e, c) => e.or(c),
        };
        let Some(at) = split else {
            return Err(GrantError::Header {
                header: text.to_string(),
                why: "write it as `Name=Value` (e.g. `Authorization=Bearer {{secret:stripe}}`)".into(),
            });
        };
        HeaderGrant::new(host, text[..at].trim(), text[at + 1..].trim_start())
    }
}

/// Everything a template grants its jobs. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Where jobs may connect: `scheme://host[:port]` entries.
    #[schema(value_type = Vec<String>, examples(json!(["https://api.example.com", "tcp://smtp.example.com:587"])))]
    pub allowed_hosts: Vec<AllowedHost>,
    /// Headers the host adds to requests for some of those hosts.
    pub headers: Vec<HeaderGrant>,
    /// Secrets a job may read with `secret(name)`.
    pub secrets: Vec<String>,
}

impl Grants {
    /// Whether it grants nothing at all.
    pub fn is_empty(&self) -> bool {
        self.allowed_hosts.is_empty() && self.headers.is_empty() && self.secrets.is_empty()
    }

    /// Checks that it hangs together: each header belongs to one of the
    /// allowed hosts, no header is granted twice for one host, secret names
    /// are valid. Duplicates are removed.
    pub fn validate(mut self) -> Result<Grants, GrantError> {
        for header in &self.headers {
            if !self.allowed_hosts.contains(&header.host) {
                return Err(GrantError::Header {
                    header: format!("{}={}", header.name, header.value.as_str()),
                    why: format!("it is for `{}`, which is not among the allowed hosts", header.host),
                });
            }
        }
        for (i, header) in self.headers.iter().enumerate() {
            if self.headers[..i].iter().any(|h| h.host == header.host && h.name == header.name) {
                return Err(GrantError::Header {
                    header: format!("{}={}", header.name, header.value.as_str()),
                    why: format!("`{}` is granted twice for `{}`", header.name, header.host),
                });
            }
        }
        for name in &self.secrets {
            check_secret_name(name)?;
        }
        let mut seen = Vec::new();
        self.allowed_hosts.retain(|h| {
            let new = !seen.contains(h);
            seen.push(h.clone());
            new
        });
        self.secrets.sort();
        self.secrets.dedup();
        Ok(self)
    }

    /// Every secret these grants use (header placeholders and readable
    /// secrets), sorted, once each.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.secrets.clone();
        names.extend(self.headers.iter().flat_map(|h| h.value.secrets().map(str::to_string)));
        names.sort();
        names.dedup();
        names
    }

    /// These grants with the allowed hosts replaced by `hosts`, each of which
    /// must be covered by one of the template's entries (a job narrows,
    /// never widens). Headers stay attached to the template's entries and
    /// apply to the job's requests that match them.
    pub fn narrow(&self, template: &str, hosts: &[AllowedHost]) -> Result<Grants, GrantError> {
        for entry in hosts {
            if !self.allowed_hosts.iter().any(|granted| granted.covers(entry)) {
                let granted = if self.allowed_hosts.is_empty() {
                    "it grants none".to_string()
                } else {
                    self.allowed_hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
                };
                return Err(GrantError::Widens { entry: entry.to_string(), template: template.to_string(), granted });
            }
        }
        let mut narrowed = self.clone();
        narrowed.allowed_hosts = hosts.to_vec();
        Ok(narrowed)
    }

    /// The first allowed entry matching a destination.
    pub fn find(&self, scheme: Scheme, host: &str, port: u16) -> Option<&AllowedHost> {
        self.allowed_hosts.iter().find(|h| h.matches(scheme, host, port))
    }

    /// The headers to add to a request for `scheme://host:port`.
    pub fn headers_for(&self, scheme: Scheme, host: &str, port: u16) -> impl Iterator<Item = &HeaderGrant> {
        self.headers.iter().filter(move |h| h.host.matches(scheme, host, port))
    }

    /// Whether any `tcp://` entry is granted.
    pub fn has_tcp(&self) -> bool {
        self.allowed_hosts.iter().any(|h| h.scheme == Scheme::Tcp)
    }

    /// Whether any `tcp://` entry names hosts by name (so name lookup is needed).
    pub fn has_tcp_names(&self) -> bool {
        self.allowed_hosts.iter().any(|h| h.scheme == Scheme::Tcp && !matches!(h.host, HostPattern::Ip(_)))
    }

    /// The `tcp://` entries whose host pattern (a name) matches `name`.
    pub fn tcp_names<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a AllowedHost> + 'a {
        self.allowed_hosts
            .iter()
            .filter(move |h| h.scheme == Scheme::Tcp && !matches!(h.host, HostPattern::Ip(_)) && h.host.matches(name))
    }

    /// Whether a `tcp://` entry names `ip` literally with a port matching `port`.
    pub fn tcp_literal_allows(&self, ip: IpAddr, port: u16) -> bool {
        self.allowed_hosts.iter().any(|h| {
            h.scheme == Scheme::Tcp && h.host == HostPattern::Ip(ip.to_canonical()) && h.port.matches(port)
        })
    }
}

/// Checks a secret's name: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn check_secret_name(name: &str) -> Result<(), GrantError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(GrantError::SecretName(name.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> AllowedHost {
        AllowedHost::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(text: &str) -> String {
        match AllowedHost::parse(text) {
            Err(GrantError::Entry { entry, why }) => {
                assert_eq!(entry, text);
                why
            }
            other => panic!("{text} was not refused: {other:?}"),
        }
    }

    #[test]
    fn entries_parse_to_their_canonical_form() {
        for (given, canonical) in [
            ("https://api.example.com", "https://api.example.com"),
            ("HTTPS://API.Example.COM:443", "https://api.example.com"),
            ("https://*.example.com", "https://*.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("tcp://smtp.example.com:587", "tcp://smtp.example.com:587"),
            ("https://api.example.com:*", "https://api.example.com:*"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::ffff:10.0.0.1]", "http://10.0.0.1"),
            ("tcp://*.internal.example:*", "tcp://*.internal.example:*"),
        ] {
            assert_eq!(entry(given).to_string(), canonical, "{given}");
        }
    }

    #[test]
    fn malformed_entries_are_refused_with_the_reason() {
        assert!(refused("api.example.com").contains("no scheme"));
        assert!(refused("ftp://files.example.com").contains("`ftp` is not one of"));
        assert!(refused("https://api.example.com/v1").contains("never a path"));
        assert!(refused("https://api.example.com?x=1").contains("never a path"));
        assert!(refused("https://user:pw@api.example.com").contains("user name"));
        assert!(refused("tcp://smtp.example.com").contains("needs a port"));
        assert!(refused("https://*").contains("bare `*`"));
        assert!(refused("https://api.*.com").contains("first label"));
        assert!(refused("https://**.example.com").contains("first label"));
        assert!(refused("https://api.example.com:0").contains("from 1 to 65535"));
        assert!(refused("https://api.example.com:70000").contains("from 1 to 65535"));
        assert!(refused("https://api.example.com:http").contains("from 1 to 65535"));
        assert!(refused("https://bücher.example").contains("punycode"));
        assert!(refused("https://").contains("empty"));
        assert!(refused("https://127.1").contains("neither a full IP address"));
        assert!(refused("https://under_score.example.com").contains("not a host name label"));
        assert!(refused("https://example.com.").contains("ends with a dot"));
        assert!(refused("http://[::1").contains("not closed"));
        assert!(refused("http://a b.com").contains("space"));
    }

    #[test]
    fn matching_follows_scheme_host_and_port() {
        let api = entry("https://api.example.com");
        assert!(api.matches(Scheme::Https, "API.example.com", 443));
        assert!(!api.matches(Scheme::Http, "api.example.com", 443));
        assert!(!api.matches(Scheme::Https, "api.example.com", 8443));
        assert!(!api.matches(Scheme::Https, "api.example.com.evil.net", 443));

        let sub = entry("https://*.example.com");
        assert!(sub.matches(Scheme::Https, "a.example.com", 443));
        assert!(sub.matches(Scheme::Https, "a.b.example.com", 443));
        assert!(!sub.matches(Scheme::Https, "example.com", 443));
        assert!(!sub.matches(Scheme::Https, "badexample.com", 443));

        let any_port = entry("https://api.example.com:*");
        assert!(any_port.matches(Scheme::Https, "api.example.com", 8443));

        let v6 = entry("http://[::1]:8080");
        assert!(v6.matches(Scheme::Http, "[::1]", 8080));
        assert!(v6.matches(Scheme::Http, "::1", 8080));
        assert!(!v6.matches(Scheme::Http, "localhost", 8080));
    }

    #[test]
    fn a_job_may_narrow_but_never_widen() {
        let grants = Grants {
            allowed_hosts: vec![entry("https://*.example.com"), entry("tcp://smtp.example.com:587")],
            ..Grants::default()
        };
        let narrowed = grants.narrow("t", &[entry("https://api.example.com"), entry("https://*.eu.example.com")]).unwrap();
        assert_eq!(narrowed.allowed_hosts.len(), 2);
        for wider in ["https://example.com", "http://api.example.com", "https://api.example.com:*", "tcp://smtp.example.com:25", "https://*.com"] {
            let err = grants.narrow("t", &[entry(wider)]).unwrap_err();
            assert!(matches!(&err, GrantError::Widens { entry, .. } if entry == wider), "{wider}: {err}");
        }
        assert!(grants.narrow("t", &[]).unwrap().allowed_hosts.is_empty());
    }

    #[test]
    fn header_templates_name_their_secrets_and_render() {
        let t = HeaderTemplate::parse("Bearer {{secret:stripe}} and {{ secret:other }}").unwrap();
        assert_eq!(t.secrets().collect::<Vec<_>>(), ["stripe", "other"]);
        let rendered = t.render(|n| if n == "stripe" { Some("sk1") } else if n == "other" { Some("x") } else { None });
        assert_eq!(rendered.unwrap(), "Bearer sk1 and x");
        assert_eq!(t.render(|_| None), Err("stripe".to_string()));
        assert!(HeaderTemplate::parse("{{env:HOME}}").unwrap_err().contains("not a placeholder"));
        assert!(HeaderTemplate::parse("{{secret:a").unwrap_err().contains("never closed"));
        assert!(HeaderTemplate::parse("{{secret:bad name}}").is_err());
    }

    #[test]
    fn header_grants_belong_to_an_allowed_http_host() {
        let api = entry("https://api.example.com");
        let h = HeaderGrant::parse(api.clone(), "Authorization=Bearer {{secret:stripe}}").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_str()), ("authorization", "Bearer {{secret:stripe}}"));
        let colon = HeaderGrant::parse(api.clone(), "X-Api-Key: {{secret:k}}").unwrap();
        assert_eq!(colon.name, "x-api-key");
        assert!(HeaderGrant::parse(api.clone(), "Host=evil").is_err());
        assert!(HeaderGrant::parse(entry("tcp://a.example.com:1"), "X=y").is_err());
        assert!(HeaderGrant::parse(api.clone(), "no separator").is_err());

        let orphan = Grants { headers: vec![h.clone()], ..Grants::default() };
        assert!(orphan.validate().unwrap_err().to_string().contains("not among the allowed hosts"));
        let twice = Grants { allowed_hosts: vec![api.clone()], headers: vec![h.clone(), h.clone()], ..Grants::default() };
        assert!(twice.validate().unwrap_err().to_string().contains("granted twice"));
        let good = Grants { allowed_hosts: vec![api.clone()], headers: vec![h], secrets: vec!["smtp".into()] }.validate().unwrap();
        assert_eq!(good.secret_names(), ["smtp", "stripe"]);
        assert_eq!(good.headers_for(Scheme::Https, "api.example.com", 443).count(), 1);
        assert_eq!(good.headers_for(Scheme::Https, "other.example.com", 443).count(), 0);
    }

    #[test]
    fn grants_round_trip_through_json() {
        let api = entry("https://api.example.com");
        let grants = Grants {
            allowed_hosts: vec![api.clone(), entry("tcp://127.0.0.1:2525")],
            headers: vec![HeaderGrant::parse(api, "Authorization=Bearer {{secret:stripe}}").unwrap()],
            secrets: vec!["smtp".into()],
        };
        let json = serde_json::to_string(&grants).unwrap();
        assert_eq!(
            json,
            r#"{"allowed_hosts":["https://api.example.com","tcp://127.0.0.1:2525"],"headers":[{"host":"https://api.example.com","name":"authorization","value":"Bearer {{secret:stripe}}"}],"secrets":["smtp"]}"#
        );
        assert_eq!(serde_json::from_str::<Grants>(&json).unwrap(), grants);
        assert!(serde_json::from_str::<Grants>(r#"{"allowed_hosts":["ftp://x"]}"#).is_err());
    }

    #[test]
    fn tcp_grants_by_literal_and_by_name() {
        let grants = Grants {
            allowed_hosts: vec![entry("tcp://127.0.0.1:2525"), entry("tcp://*.mail.example:587"), entry("https://10.0.0.1")],
            ..Grants::default()
        };
        assert!(grants.tcp_literal_allows("127.0.0.1".parse().unwrap(), 2525));
        assert!(grants.tcp_literal_allows("::ffff:127.0.0.1".parse().unwrap(), 2525));
        assert!(!grants.tcp_literal_allows("127.0.0.1".parse().unwrap(), 25));
        assert!(!grants.tcp_literal_allows("10.0.0.1".parse().unwrap(), 443), "an https entry grants no tcp");
        assert_eq!(grants.tcp_names("smtp.mail.example").count(), 1);
        assert_eq!(grants.tcp_names("127.0.0.1").count(), 0);
        assert!(grants.has_tcp() && grants.has_tcp_names());
    }
}
