//! Sending one vetted HTTP request: TCP to the addresses the grant check and
//! the forgery guard let through (never to a name), TLS with the node's
//! roots and SNI for the name the guest asked for, HTTP/1.1 through hyper,
//! bodies metered against the run's limits. Mirrors wasmtime-wasi-http's
//! default sender in shape; nothing in it may panic (it runs in a task whose
//! panic would be the host's).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::runtime::audit::Meter;

/// Where and how to send: the host name as the guest wrote it (for SNI and
/// the certificate check), the port, TLS or not, and the vetted addresses.
pub(super) struct Target {
    pub(super) host: String,
    pub(super) tls: bool,
    pub(super) addrs: Vec<SocketAddr>,
}

/// The bounds of one request.
pub(super) struct Bounds {
    pub(super) connect: Duration,
    pub(super) first_byte: Option<Duration>,
    pub(super) between_bytes: Option<Duration>,
    pub(super) max_request_body: u64,
    pub(super) max_response_body: u64,
}

/// The connection future wasmtime drives while the response body is read.
pub(super) type Io = Box<dyn Future<Output = Result<(), Error>> + Send>;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The sending half of an HTTP/1.1 connection, and the connection itself.
type Connection = (
    hyper::client::conn::http1::SendRequest<WasiBody>,
    hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, WasiBody>,
);

/// Sends `request` to an already vetted target, counting its body bytes into
/// `meter.sent` and failing it past the limit; returns the response head and
/// the connection future (wasmtime spawns it and ties it to the body).
pub(super) async fn send(
    mut request: http::Request<WasiBody>,
    target: Target,
    tls: Arc<rustls::ClientConfig>,
    bounds: Bounds,
    meter: Arc<Meter>,
) -> Result<(http::Response<hyper::body::Incoming>, Io), Error> {
    let (mut sender, conn) = match connect(&target, tls, &bounds).await {
        Ok(connection) => connection,
        Err(e) => return Err(drain(request.into_body(), bounds.max_request_body, e).await),
    };
    // The request line in origin form (`/path?query`).
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let max = bounds.max_request_body;
    let (leftover_tx, leftover) = tokio::sync::oneshot::channel();
    let request = request.map(|body| {
        let handoff = Handoff { body: Some(body), leftover: Some(leftover_tx) };
        Metered::new(handoff, max, meter, Direction::Sent, None).boxed_unsync()
    });

    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let mut rest = Box::pin(discard_leftover(leftover, max));
    let mut rest_done = false;
    let head = sender.send_request(request);
    tokio::pin!(head);
    // Drive the connection (and the reading of a body hyper let go of)
    // while waiting for the response head.
    let waiting = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = head.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !rest_done && rest.as_mut().poll(cx).is_ready() {
            rest_done = true;
        }
        if !conn_done && let Poll::Ready(r) = conn.as_mut().poll(cx) {
            conn_done = true;
            if let Err(e) = r {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Pending
    });
    let response = match bounds.first_byte {
        Some(limit) => tokio::time::timeout(limit, waiting).await.map_err(|_| Error::ConnectionReadTimeout)?,
        None => waiting.await,
    }
    .map_err(|e| match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Error>()) {
        // Our own request-body error comes back wrapped in hyper's.
        Some(Error::HttpRequestBodySize(limit)) => Error::HttpRequestBodySize(*limit),
        _ => Error::Hyper(e),
    })?;
    let io: Io = Box::new(async move {
        let conn = async move { if conn_done { Ok(()) } else { conn.await } };
        let rest = async move {
            if !rest_done {
                rest.await
            }
        };
        let (result, ()) = tokio::join!(conn, rest);
        result.map_err(Error::from)
    });
    Ok((response, io))
}

/// The guest's request body as hyper holds it. hyper lets go of a body
/// before the guest has finished writing it when it has sent all it will
/// (a GET, or a declared length reached); dropped unfinished, the body is
/// handed over to be read to its end and discarded, so the guest's writes
/// and `finish` succeed instead of failing as if the connection were reset.
struct Handoff {
    body: Option<WasiBody>,
    leftover: Option<tokio::sync::oneshot::Sender<WasiBody>>,
}

impl Body for Handoff {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Some(body) = self.body.as_mut() else { return Poll::Ready(None) };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // Ended or failed: nothing left to hand over.
            self.body = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let (Some(body), Some(leftover)) = (self.body.take(), self.leftover.take()) {
            let _ = leftover.send(body);
        }
    }
}

/// Reads to its end (up to `limit` bytes) and discards a body hyper let go of.
async fn discard_leftover(leftover: tokio::sync::oneshot::Receiver<WasiBody>, limit: u64) {
    if let Ok(body) = leftover.await {
        discard(body, limit).await;
    }
}

/// Reads a body to its end, up to `limit` bytes, and drops what it read.
async fn discard(body: WasiBody, limit: u64) {
    let mut body = std::pin::pin!(body);
    let mut seen = 0u64;
    while seen <= limit {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len() as u64),
            Some(Err(_)) | None => break,
        }
    }
}

/// TCP to the vetted addresses, TLS when asked, and the HTTP/1.1 handshake.
async fn connect(target: &Target, tls: Arc<rustls::ClientConfig>, bounds: &Bounds) -> Result<Connection, Error> {
    let tcp = match tokio::time::timeout(bounds.connect, tokio::net::TcpStream::connect(&target.addrs[..])).await {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let stream: Box<dyn Stream> = if target.tls {
        // SNI and the certificate check use the name the guest asked for (an
        // IP literal is checked against the certificate's IP names).
        let name = match target.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(target.host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?,
        };
        let connector = tokio_rustls::TlsConnector::from(tls);
        let stream = tokio::time::timeout(bounds.connect, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    tokio::time::timeout(bounds.connect, hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::from)
}

/// Reads and drops a request body the host will not send (up to `limit`
/// bytes), then gives back `error`. The guest writes its body and waits for
/// the response concurrently; letting the body go through first means it
/// learns why the request failed (denied, refused, unreachable) rather than
/// seeing its body writes cut off.
pub(super) async fn drain(body: WasiBody, limit: u64, error: Error) -> Error {
    discard(body, limit).await;
    error
}

/// Which way a metered body flows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Sent,
    Received,
}

/// What a response body tells its owner: it crossed its limit, it stalled,
/// it ended. Implemented by the audit row's guard.
pub(super) trait Watcher: Send + 'static {
    /// The body passed `limit` bytes.
    fn over(&mut self, limit: u64);
    /// No bytes arrived for `after`.
    fn stalled(&mut self, after: Duration);
    /// The body failed.
    fn failed(&mut self, error: &Error);
}

pin_project_lite::pin_project! {
    /// A body that counts its data bytes into a [`Meter`] and fails once
    /// more than `limit` went through; a response body also fails when no
    /// bytes arrive for the between-bytes timeout.
    pub(super) struct Metered<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        meter: Arc<Meter>,
        direction: Direction,
        #[pin]
        idle: Option<tokio::time::Sleep>,
        idle_after: Option<Duration>,
        watcher: Option<Box<dyn Watcher>>,
    }
}

impl<B> Metered<B> {
    pub(super) fn new(inner: B, limit: u64, meter: Arc<Meter>, direction: Direction, watcher: Option<Box<dyn Watcher>>) -> Self {
        Metered { inner, seen: 0, limit, meter, direction, idle: None, idle_after: None, watcher }
    }

    pub(super) fn idle_after(mut self, after: Option<Duration>) -> Self {
        self.idle_after = after;
        self
    }
}

fn counter(meter: &Meter, direction: Direction) -> &AtomicU64 {
    match direction {
        Direction::Sent => &meter.sent,
        Direction::Received => &meter.received,
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut this = self.project();
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.set(None);
                frame
            }
            Poll::Pending => {
                if let Some(after) = *this.idle_after {
                    if this.idle.is_none() {
                        this.idle.set(Some(tokio::time::sleep(after)));
                    }
                    if let Some(idle) = this.idle.as_mut().as_pin_mut() {
                        ready!(idle.poll(cx));
                        if let Some(w) = this.watcher.as_mut() {
                            w.stalled(after);
                        }
                        return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                    }
                }
                return Poll::Pending;
            }
        };
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    *this.seen += n;
                    counter(this.meter, *this.direction).fetch_add(n, Ordering::Relaxed);
                    if *this.seen > *this.limit {
                        if let Some(w) = this.watcher.as_mut() {
                            w.over(*this.limit);
                        }
                        return Poll::Ready(Some(Err(match this.direction {
                            Direction::Sent => Error::HttpRequestBodySize(Some(*this.limit)),
                            Direction::Received => Error::HttpResponseBodySize(Some(*this.limit)),
                        })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                let e = e.into();
                if let Some(w) = this.watcher.as_mut() {
                    w.failed(&e);
                }
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
