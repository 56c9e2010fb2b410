//! One outbound call a run made or tried (HTTP request or TCP connection):
//! the rows of a run's audit.

use serde::{Deserialize, Serialize};

/// One outbound call a run made (or tried to make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Call {
    /// Milliseconds from the start of the run to the request.
    pub at_ms: u64,
    /// The HTTP method, or `CONNECT` for a TCP connection.
    pub method: String,
    /// `scheme://host:port/path`, without the query string (`tcp://ip:port` for TCP).
    pub target: String,
    /// The response's status, when a response arrived.
    pub status: Option<u16>,
    /// Why the host refused the call before any connection was made.
    pub denied: Option<String>,
    /// What went wrong with a call the grants allowed (connect, TLS,
    /// timeout, a body over its limit, the run ending first).
    pub error: Option<String>,
    /// Request body bytes sent (HTTP only).
    pub bytes_sent: Option<u64>,
    /// Response body bytes received (HTTP only).
    pub bytes_received: Option<u64>,
    /// Milliseconds from the request to the end of the response body (or the failure).
    pub duration_ms: u64,
}
