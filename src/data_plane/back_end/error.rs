//! Why an exchange with an instance failed, and whose fault it was.

use std::io;
use std::net::SocketAddr;

/// Why sending a request to an instance, or reading its response, failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The TCP connection to the instance could not be made.
    #[error("cannot connect to instance {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than `backend_connect_timeout` (the TLS handshake included).
    #[error("timed out connecting to instance {addr}")]
    ConnectTimeout { addr: SocketAddr },
    /// The TLS handshake with an HTTPS instance failed: it does not speak TLS, or its certificate did not verify
    /// against `backend_ca`.
    #[error("TLS handshake with instance {addr} failed")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The instance closed (or reset) the connection before a response head arrived.
    #[error("instance closed the connection")]
    Closed(#[source] io::Error),
    /// The instance's response could not be parsed as HTTP/1.1.
    #[error("instance sent an unparseable response: {0}")]
    BadResponse(&'static str),
    /// The instance was deregistered while the request was on it (connection draining off, or its timeout over).
    #[error("instance deregistered while the request was in flight")]
    Cut,
    /// The client's own request body failed (it went away mid-upload, or its chunked framing was wrong).
    #[error("client request body failed")]
    ClientBody(#[source] io::Error),
}

impl BackendError {
    /// Whether connecting to the instance failed, its TLS handshake included: ELB's `BackendConnectionErrors`.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            BackendError::Connect { .. }
                | BackendError::ConnectTimeout { .. }
                | BackendError::Tls { .. }
        )
    }

    /// Whether the instance itself failed (refused, timed out connecting, reset or closed under a request): what
    /// passive health checks take an instance out of rotation for. An unparseable response is not counted: the
    /// instance is up, its application is wrong.
    pub fn is_instance_failure(&self) -> bool {
        self.is_connection_error() || matches!(self, BackendError::Closed(_))
    }

    /// Whether the client, not the instance, is at fault (its request body broke off or was malformed).
    pub fn is_client_fault(&self) -> bool {
        matches!(self, BackendError::ClientBody(_))
    }
}
