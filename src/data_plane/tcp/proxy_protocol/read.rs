//! Reading a trusted upstream's PROXY header off an accepted socket, for every listener with
//! `accept_proxy_protocol = true`: TCP and SSL listeners ([`crate::data_plane::tcp`]) and HTTP and HTTPS ones (the
//! node's accept path, [`crate::data_plane::node`]), so all of them refuse the same things the same way.
//!
//! The socket is read in ordinary reads, not byte by byte: a header and the first bytes after it usually arrive
//! in one segment, and what was read past the header is handed back to go in front of what follows (the TLS
//! handshake, the first request) with [`crate::data_plane::tcp::prefixed::Prefixed`] or the tunnel's first bytes.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{parse, Parsed, ProxyHeaderError, MAX_V1_LINE};

/// What a connection's opening header said.
#[derive(Debug)]
pub(crate) struct Opening {
    /// The client the header names; `None` for v1 `UNKNOWN`, a v2 `LOCAL` (the upstream's own health check) and
    /// v2 families other than TCP over IPv4/IPv6: the socket's own peer is the client then.
    pub source: Option<SocketAddr>,
    /// Bytes read past the header: the start of what the client sent.
    pub rest: Bytes,
}

/// Why a connection that had to open with a PROXY header is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderRefused {
    #[error("no PROXY header within the timeout")]
    Timeout,
    #[error("the connection closed before its PROXY header ended")]
    Cut(#[source] Option<std::io::Error>),
    #[error(transparent)]
    Malformed(#[from] ProxyHeaderError),
}

/// Reads a PROXY v1/v2 header off the front of `stream` by `deadline`.
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    deadline: Instant,
) -> Result<Opening, HeaderRefused> {
    let mut buf = BytesMut::with_capacity(MAX_V1_LINE * 2);
    loop {
        if let Parsed::Header { length, source } = parse(&buf)? {
            let rest = buf.split_off(length).freeze();
            return Ok(Opening { source, rest });
        }
        buf.reserve(MAX_V1_LINE);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => return Err(HeaderRefused::Timeout),
            Ok(Err(error)) => return Err(HeaderRefused::Cut(Some(error))),
            Ok(Ok(0)) => return Err(HeaderRefused::Cut(None)),
            Ok(Ok(_)) => {}
        }
    }
}
