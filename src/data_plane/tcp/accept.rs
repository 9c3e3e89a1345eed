//! A TCP/SSL listener's accept loop and one connection's life: the trusted upstream's PROXY header (when the
//! listener accepts one), the TLS handshake (SSL listeners), the instance, the tunnel, the log line.
//!
//! The node's accept loop is the HTTP listeners' own (`max_connections`, the listener's drain and cut, reload
//! swapping what new connections get), and each connection runs on its own task, so a slow handshake or header
//! never holds up the loop. The PROXY header and the TLS handshake share one deadline, `tls_handshake_timeout`: a client that sends
//! neither in time is closed, as is one whose header is missing or malformed. A connection that gets no instance
//! (none in service, the surge queue full, every connect failed) is closed at once: ELB's answer on TCP (§8).

use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::either::Either;

use super::connect::{self, Connected};
use super::prefixed::Prefixed;
use super::proxy_protocol;
use super::record::{Record, Relayed};
use super::splice::SpliceTunnel;
use super::Layer4;
use crate::data_plane::back_end::cut::CutWatch;
use crate::data_plane::proxy::ListenerContext;
use crate::data_plane::tls::TlsAcceptor;
use crate::data_plane::tunnel::{FirstBytes, Tunnel, TunnelEnd};
use crate::observability::metrics::CountedConnection;

/// Serves one accepted connection of a TCP/SSL listener (the node's accept loop, [`crate::data_plane::node`],
/// calls it for a listener whose [`crate::data_plane::node::Accepting`] has a [`Layer4`]); `tls` for SSL
/// listeners.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    context: &ListenerContext,
    layer4: &Layer4,
    tls: Option<&TlsAcceptor>,
) {
    let _counted = CountedConnection::new(&context.metrics.client_connections);
    serve_connection(stream, peer, context, layer4, tls).await;
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    context: &ListenerContext,
    layer4: &Layer4,
    tls: Option<&TlsAcceptor>,
) {
    let mut record = Record::begin(peer);
    let deadline = Instant::now() + layer4.handshake_timeout;
    let mut from_client = Bytes::new();
    if layer4.accept_proxy_protocol {
        match proxy_protocol::read_header(&mut stream, deadline).await {
            Ok(opening) => {
                record.client = opening.source.unwrap_or(peer);
                from_client = opening.rest;
            }
            Err(error) => {
                context.metrics.proxy_protocol_refused.inc();
                tracing::debug!(%peer, %error, "closing a connection without a valid PROXY header");
                return;
            }
        }
    }
    let Some(tls) = tls else {
        return relay(Either::Left(stream), from_client, context, layer4, record).await;
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    match tls
        .accept(Prefixed::new(from_client, stream), timeout)
        .await
    {
        Ok(stream) => {
            context.metrics.tls_handshakes.inc();
            let info = crate::data_plane::tls::handshake_info(stream.get_ref().1);
            record.tls = Some(info.negotiated.names());
            relay(Either::Right(stream), Bytes::new(), context, layer4, record).await
        }
        Err(error) => {
            context.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, %error, "TLS handshake failed");
        }
    }
}

/// A client connection: plain TCP, or TLS terminated by an SSL listener.
type ClientStream = Either<TcpStream, tokio_rustls::server::TlsStream<Prefixed<TcpStream>>>;

/// Connects to an instance and carries bytes both ways until both sides close, the idle timeout passes, or the
/// instance is cut (deregistered, ELB-SPEC §5); then logs the connection. TCP on both sides goes by splice(2);
/// TLS on either side through the buffered tunnel.
async fn relay(
    client: ClientStream,
    from_client: Bytes,
    context: &ListenerContext,
    layer4: &Layer4,
    record: Record,
) {
    let connected = match connect::open(context, layer4, record.client).await {
        Ok(connected) => connected,
        Err(error) => {
            tracing::debug!(client = %record.client, %error, "closing: no instance");
            return record.finish(context, None);
        }
    };
    let connected_at = Instant::now();
    Record::connected(context, connected.connect_time);
    let Connected {
        stream,
        outstanding,
        connect_time,
    } = connected;
    let target = outstanding.target().clone();
    let idle_timeout = context.routes.load().idle_timeout;
    let (received, sent) = (
        context.metrics.received_bytes.clone(),
        context.metrics.sent_bytes.clone(),
    );
    let mut cut = target.watch_cut();
    let (ended, carried) = match (client, stream) {
        (Either::Left(client), Either::Left(instance)) => {
            match SpliceTunnel::new(client, instance, from_client, idle_timeout, received, sent) {
                Ok(mut tunnel) => {
                    let ended = until_cut(&mut cut, |cx| tunnel.poll(cx)).await;
                    (ended, Carried::of_splice(&tunnel))
                }
                Err(error) => (Err(error), Carried::default()),
            }
        }
        (mut client, instance) => {
            let mut tunnel = Tunnel::new(
                instance,
                from_client,
                Bytes::new(),
                idle_timeout,
                received,
                sent,
            );
            let ended = until_cut(&mut cut, |cx| tunnel.poll(cx, &mut client)).await;
            (ended, Carried::of_tunnel(&tunnel))
        }
    };
    match &ended {
        Ok(end) => tracing::debug!(?end, instance = %target.instance_id, "TCP connection ended"),
        Err(error) => {
            tracing::debug!(%error, instance = %target.instance_id, "TCP connection failed")
        }
    }
    drop(outstanding);
    record.finish(
        context,
        Some(Relayed {
            backend: target.addr,
            connect_time,
            connected_at,
            first_bytes: carried.first_bytes,
            received: carried.received,
            sent: carried.sent,
            idle: matches!(ended, Ok(Some(TunnelEnd::Idle))),
        }),
    );
}

/// Polls a copy loop until it ends or the instance is cut (`Ok(None)`).
async fn until_cut(
    cut: &mut CutWatch,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<std::io::Result<TunnelEnd>>,
) -> std::io::Result<Option<TunnelEnd>> {
    std::future::poll_fn(|cx| {
        if cut.poll_cut(cx) {
            return Poll::Ready(Ok(None));
        }
        poll(cx).map_ok(Some)
    })
    .await
}

/// What a copy loop moved, for the connection's log line.
#[derive(Default)]
struct Carried {
    first_bytes: FirstBytes,
    received: u64,
    sent: u64,
}

impl Carried {
    fn of_splice(tunnel: &SpliceTunnel) -> Self {
        Carried {
            first_bytes: tunnel.first_bytes(),
            received: tunnel.received(),
            sent: tunnel.sent(),
        }
    }

    fn of_tunnel<B: AsyncRead + AsyncWrite + Unpin>(tunnel: &Tunnel<B>) -> Self {
        Carried {
            first_bytes: tunnel.first_bytes(),
            received: tunnel.received(),
            sent: tunnel.sent(),
        }
    }
}
