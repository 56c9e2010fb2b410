//! Servers on 127.0.0.1 for the outbound tests: HTTP and HTTPS (with a fresh
//! self-signed certificate the node is told to trust), each recording what
//! it saw, with routes that answer, redirect, stall or send big bodies; and
//! a line-protocol (SMTP-like) TCP server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use wasmtime_wasi_http::io::TokioIo;

/// One request a test server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Record {
    seen: Mutex<Vec<Seen>>,
    /// `/slow` requests whose client went away.
    dropped: Mutex<usize>,
    /// Woken whenever either grows.
    changed: Notify,
}

impl Record {
    /// Waits until `ready` holds, re-checking on every change.
    async fn until(&self, ready: impl Fn(&Record) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if ready(self) {
                return;
            }
            changed.await;
        }
    }
}

/// An HTTP or HTTPS server on 127.0.0.1. Routes:
/// - `/hook`: 200 with `{"ok":true}` (11 bytes);
/// - `/echo`: 200 with the request's `authorization` header as the body;
/// - `/redirect?to=URL`: 302 to URL;
/// - `/slow`: never answers;
/// - `/big?bytes=N`: N bytes with a Content-Length;
/// - `/stream?bytes=N`: N bytes in 1000-byte chunks without a length.
pub struct TestServer {
    pub addr: SocketAddr,
    tls: bool,
    /// The certificate to trust (HTTPS only).
    pub ca_file: Option<PathBuf>,
    record: Arc<Record>,
    _dir: tempfile::TempDir,
}

type Reply = hyper::Response<BoxBody<Bytes, Infallible>>;

fn full(status: u16, body: impl Into<Bytes>) -> Reply {
    let mut reply = hyper::Response::new(Full::new(body.into()).boxed());
    *reply.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    reply
}

fn query(path: &str, key: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// A body of `left` bytes in 1000-byte frames, with no length announced.
struct Chunks {
    left: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(1000);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'z'; n])))))
    }
}

/// Notifies `dropped` when a `/slow` handler is dropped (its client left).
struct OnDrop(Arc<Record>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        *self.0.dropped.lock().unwrap() += 1;
        self.0.changed.notify_waiters();
    }
}

async fn handle(record: Arc<Record>, request: hyper::Request<Incoming>) -> Result<Reply, Infallible> {
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let authorization = request.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => return Ok(full(400, "incomplete body")),
    };
    record.seen.lock().unwrap().push(Seen { method, path: path.clone(), authorization: authorization.clone(), body });
    record.changed.notify_waiters();
    let route = path.split('?').next().unwrap_or("");
    let bytes = || query(&path, "bytes").and_then(|b| b.parse::<usize>().ok()).unwrap_or(0);
    Ok(match route {
        "/hook" => full(200, r#"{"ok":true}"#),
        "/echo" => full(200, authorization.unwrap_or_default()),
        "/redirect" => {
            let mut reply = full(302, "");
            reply.headers_mut().insert("location", query(&path, "to").unwrap_or_default().parse().unwrap());
            reply
        }
        "/slow" => {
            let _guard = OnDrop(record.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/big" => full(200, vec![b'y'; bytes()]),
        "/stream" => hyper::Response::new(Chunks { left: bytes() }.boxed()),
        _ => full(404, "no such route"),
    })
}

impl TestServer {
    /// A plain HTTP server.
    pub async fn http() -> TestServer {
        Self::start(None).await
    }

    /// An HTTPS server whose certificate (for `127.0.0.1` and `localhost`)
    /// is in [`ca_file`](Self::ca_file).
    pub async fn https() -> TestServer {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        Self::start(Some((tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert.pem()))).await
    }

    async fn start(tls: Option<(tokio_rustls::TlsAcceptor, String)>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = tls.as_ref().map(|(_, pem)| {
            let path = dir.path().join("ca.pem");
            std::fs::write(&path, pem).unwrap();
            path
        });
        let record = Arc::new(Record::default());
        let shared = record.clone();
        let is_tls = tls.is_some();
        let acceptor = tls.map(|(acceptor, _)| acceptor);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let record = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(record.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        TestServer { addr, tls: is_tls, ca_file, record, _dir: dir }
    }

    /// `http(s)://127.0.0.1:PORT` — the entry that grants this server.
    pub fn origin(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.addr.port())
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Every request it received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.record.seen.lock().unwrap().clone()
    }

    /// Resolves once `n` requests have arrived in all.
    pub async fn until_seen(&self, n: usize) {
        self.record.until(|r| r.seen.lock().unwrap().len() >= n).await
    }

    /// Resolves once clients have dropped `n` `/slow` requests in all.
    pub async fn until_slow_dropped(&self, n: usize) {
        self.record.until(|r| *r.dropped.lock().unwrap() >= n).await
    }
}

/// A line-protocol server speaking enough SMTP for `smtp-send`; records
/// every line it received.
pub struct LineServer {
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LineServer {
    pub async fn start() -> LineServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = tcp.into_split();
                    let mut read = BufReader::new(read);
                    let _ = write.write_all(b"220 test smtp ready\r\n").await;
                    let mut in_data = false;
                    let mut line = String::new();
                    while read.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let text = line.trim_end().to_string();
                        line.clear();
                        seen.lock().unwrap().push(text.clone());
                        let reply: &[u8] = if in_data {
                            if text != "." {
                                continue;
                            }
                            in_data = false;
                            b"250 2.0.0 queued as 42\r\n"
                        } else if text.starts_with("EHLO") {
                            b"250-test\r\n250 AUTH PLAIN\r\n"
                        } else if text.starts_with("AUTH") {
                            b"235 2.7.0 authenticated\r\n"
                        } else if text == "DATA" {
                            in_data = true;
                            b"354 go ahead\r\n"
                        } else if text == "QUIT" {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        let _ = write.write_all(reply).await;
                    }
                });
            }
        });
        LineServer { addr, lines }
    }

    /// Every line received, in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}
