//! A small blocking HTTP client for jobs, over `wasi:http` (through the
//! [`wstd`](https://docs.rs/wstd) crate).
//!
//! A job reaches only the hosts its template grants (`elihu template push
//! --allow-host https://api.example.com`); a request to any other host fails
//! with [`Error::Denied`] and the run's log says which URL was refused.
//! Headers a grant makes the host add (an `Authorization` carrying a secret)
//! are added outside the job: the job neither sets nor sees them.
//!
//! ```no_run
//! use elihu_guest::http;
//! # fn demo() -> Result<(), http::Error> {
//! let health = http::get("https://api.example.com/health")?;
//! assert_eq!(health.status(), 200);
//!
//! let created = http::Request::post("https://api.example.com/v1/orders")
//!     .header("x-request-id", "42")
//!     .json(&serde_json::json!({"sku": "A-1", "quantity": 2}))?
//!     .send()?;
//! let order: serde_json::Value = created.json()?;
//! # Ok(()) }
//! ```
//!
//! Redirects (301, 302, 303, 307, 308) are followed, up to 5 by default
//! ([`Request::max_redirects`]); every hop is a new request that the host
//! checks against the grants again, so a granted host cannot redirect a job
//! to one that is not. A 303 (and a 301 or 302 answering anything but GET
//! or HEAD) continues as a GET without a body; credentials the job set
//! itself (`authorization`, `cookie`) are dropped when a redirect leaves the
//! origin.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a request did not produce a response.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The host refused the request before connecting: the template does
    /// not grant the host, or a granted name resolves to an internal address.
    Denied {
        /// The URL refused.
        url: String,
        /// What the host said.
        reason: String,
    },
    /// The URL cannot be requested (not absolute, not http or https).
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header the job set was refused (a name the host reserves, or one
    /// a grant makes the host add).
    Header {
        /// The header's name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The request was allowed but failed: connection, TLS, timeout,
    /// protocol, or a body over the run's limit.
    Failed {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// More redirects than allowed.
    TooManyRedirects {
        /// The last URL redirected from.
        url: String,
        /// The limit.
        max: u32,
    },
    /// A body that is not the JSON (or text) expected.
    Body(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Denied { url, reason } => write!(f, "the request to {url} was denied: {reason}"),
            Error::InvalidUrl { url, reason } => write!(f, "`{url}` cannot be requested: {reason}"),
            Error::Header { name, reason } => write!(f, "the header `{name}` was refused: {reason}"),
            Error::Failed { url, reason } => write!(f, "the request to {url} failed: {reason}"),
            Error::TooManyRedirects { url, max } => write!(f, "more than {max} redirects, the last from {url}"),
            Error::Body(why) => write!(f, "the body is not what was expected: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::get(url).send()
}

/// A request being built; [`send`](Request::send) sends it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_redirects: u32,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: &str) -> Request {
        Request { method: method.to_ascii_uppercase(), url: url.to_string(), headers: Vec::new(), body: Vec::new(), max_redirects: 5 }
    }

    /// A GET request.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    /// A PUT request.
    pub fn put(url: &str) -> Request {
        Request::new("PUT", url)
    }

    /// A DELETE request.
    pub fn delete(url: &str) -> Request {
        Request::new("DELETE", url)
    }

    /// Adds a header (repeatable).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Request, Error> {
        self.body = serde_json::to_vec(value).map_err(|e| Error::Body(e.to_string()))?;
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        Ok(self.header("content-type", "application/json"))
    }

    /// How many redirects to follow (0: none; the 3xx response is returned).
    pub fn max_redirects(mut self, max: u32) -> Request {
        self.max_redirects = max;
        self
    }

    /// Sends the request (following redirects) and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let mut request = self;
        let mut redirects = 0;
        loop {
            let response = transport::send(&request)?;
            let Some(next) = request.redirect(&response)? else { return Ok(response) };
            if redirects == request.max_redirects {
                return if request.max_redirects == 0 {
                    Ok(response)
                } else {
                    Err(Error::TooManyRedirects { url: request.url, max: request.max_redirects })
                };
            }
            redirects += 1;
            request = next;
        }
    }

    /// The request a redirect response asks for, if it is one.
    fn redirect(&self, response: &Response) -> Result<Option<Request>, Error> {
        if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(None);
        }
        let Some(location) = response.header("location") else { return Ok(None) };
        let url = join(&self.url, location).ok_or_else(|| Error::InvalidUrl {
            url: location.to_string(),
            reason: format!("the redirect from {} points nowhere usable", self.url),
        })?;
        let mut next = self.clone();
        if response.status == 303 || (matches!(response.status, 301 | 302) && !matches!(self.method.as_str(), "GET" | "HEAD")) {
            next.method = "GET".into();
            next.body.clear();
            next.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type") && !n.eq_ignore_ascii_case("content-length"));
        }
        if origin(&url) != origin(&self.url) {
            next.headers.retain(|(n, _)| !["authorization", "cookie", "proxy-authorization"].iter().any(|s| n.eq_ignore_ascii_case(s)));
        }
        next.url = url;
        Ok(Some(next))
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The URL that answered (after redirects).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error::Body(e.to_string()))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Body(e.to_string()))
    }
}

/// `scheme://authority` of an absolute URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

/// Resolves a `Location` against the URL it answered.
fn join(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.contains("://") {
        return Some(location.to_string());
    }
    let origin = origin(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split_once("://")?.0;
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &base[origin.len()..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    if location.starts_with('?') {
        return Some(format!("{origin}{path}{location}"));
    }
    Some(format!("{origin}{dir}{location}"))
}

#[cfg(target_arch = "wasm32")]
mod transport {
    //! One request and its whole response through `wasi:http`, via wstd.
    use super::{Error, Request, Response};
    use wstd::http::error::HeaderError;
    use wstd::http::{Body, Client, ErrorCode};

    pub(super) fn send(request: &Request) -> Result<Response, Error> {
        let url = request.url.clone();
        let uri: wstd::http::Uri = url
            .parse()
            .map_err(|e: wstd::http::InvalidUri| Error::InvalidUrl { url: url.clone(), reason: e.to_string() })?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(Error::InvalidUrl { url, reason: "only absolute http:// and https:// URLs can be requested".into() }),
        }
        let mut builder = wstd::http::Request::builder().method(request.method.as_str()).uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outgoing = builder
            .body(Body::from(request.body.clone()))
            .map_err(|e| Error::InvalidUrl { url: url.clone(), reason: e.to_string() })?;
        wstd::runtime::block_on(async {
            let mut response = Client::new().send(outgoing).await.map_err(|e| classify(&url, &request.headers, e))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let body = response
                .body_mut()
                .contents()
                .await
                .map_err(|e| Error::Failed { url: url.clone(), reason: format!("reading the body: {e:#}") })?
                .to_vec();
            Ok(Response { status, url: url.clone(), headers, body })
        })
    }

    fn classify(url: &str, headers: &[(String, String)], error: wstd::http::Error) -> Error {
        if let Some(code) = error.downcast_ref::<ErrorCode>() {
            return match code {
                ErrorCode::HttpRequestDenied => {
                    Error::Denied { url: url.to_string(), reason: "the job's template does not grant this host".into() }
                }
                ErrorCode::DestinationIpProhibited => Error::Denied {
                    url: url.to_string(),
                    reason: "the host name resolves to an internal address the template does not grant".into(),
                },
                other => Error::Failed { url: url.to_string(), reason: format!("{other}") },
            };
        }
        if let Some(HeaderError::Forbidden) = error.downcast_ref::<HeaderError>() {
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            return Error::Header {
                name: names.join(", "),
                reason: "one of these is reserved to the host (a connection header, or one a grant adds)".into(),
            };
        }
        Error::Failed { url: url.to_string(), reason: format!("{error:#}") }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    //! Outside a wasm job there is no `wasi:http` to send through.
    use super::{Error, Request, Response};

    pub(super) fn send(request: &Request) -> Result<Response, Error> {
        Err(Error::Failed {
            url: request.url.clone(),
            reason: "outbound HTTP works only inside an elihu job (built for wasm32-wasip2)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_url_they_answered() {
        let base = "https://a.example.com/v1/orders?page=2";
        assert_eq!(join(base, "https://b.example.com/x").unwrap(), "https://b.example.com/x");
        assert_eq!(join(base, "//c.example.com/y").unwrap(), "https://c.example.com/y");
        assert_eq!(join(base, "/root").unwrap(), "https://a.example.com/root");
        assert_eq!(join(base, "items/1").unwrap(), "https://a.example.com/v1/items/1");
        assert_eq!(join(base, "?page=3").unwrap(), "https://a.example.com/v1/orders?page=3");
        assert_eq!(join("http://h:8080", "next").unwrap(), "http://h:8080/next");
        assert_eq!(join("not a url", "/x"), None);
    }

    fn response(status: u16, location: &str) -> Response {
        Response { status, url: String::new(), headers: vec![("Location".into(), location.into())], body: Vec::new() }
    }

    #[test]
    fn redirects_change_method_and_drop_credentials_as_browsers_do() {
        let post = Request::post("https://a.example.com/hook").header("Authorization", "Bearer x").json(&1).unwrap();
        let same = post.redirect(&response(307, "/again")).unwrap().unwrap();
        assert_eq!((same.method.as_str(), same.url.as_str(), same.body.as_slice()), ("POST", "https://a.example.com/again", &b"1"[..]));
        assert_eq!(same.headers.len(), 2, "same origin keeps the job's headers");

        let other = post.redirect(&response(303, "https://b.example.com/done")).unwrap().unwrap();
        assert_eq!((other.method.as_str(), other.body.len()), ("GET", 0));
        assert!(other.headers.is_empty(), "credentials and the body's type are dropped: {:?}", other.headers);

        assert!(post.redirect(&response(200, "/x")).unwrap().is_none());
        assert!(post.redirect(&Response { status: 302, url: String::new(), headers: vec![], body: vec![] }).unwrap().is_none());
    }

    #[test]
    fn outside_wasm_a_request_says_why_it_cannot_go() {
        let err = get("https://example.com").unwrap_err();
        assert!(err.to_string().contains("only inside an elihu job"), "{err}");
    }
}
