//! One accepted connection, served: a plain HTTP listener's connection by elbe's HTTP/1 server inline, the
//! others (TLS, Proxy Protocol, TCP and SSL listeners) boxed, and HTTP/2 handed on from HTTP/1 (ELB-SPEC.md §3).
//!
//! The task of every open connection is allocated with room for its future, idle or not, so the plain path's
//! future is a struct ([`ConnectionTask`], [`Http1Serve`]) holding the HTTP/1 connection and what it needs once,
//! rather than nested `async fn`s, each of which kept its own copy of the socket, the peer and the drain signal
//! (BENCHMARKS.md "Idle connections").

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{Accepting, Connections, ListenerSignals, Tokens};
use crate::data_plane::body::ConnectionState;
use crate::data_plane::front_end::http1::{self as front_end, ClientStream, Served};
use crate::data_plane::front_end::http2::{server, ClientIo, Underway, WebSockets};
use crate::data_plane::proxy::{
    self, ClientFacts, ClientProtocol, ConnectionFacts, Facts, ListenerContext,
};
use crate::data_plane::tcp::prefixed::Prefixed;
use crate::data_plane::tcp::proxy_protocol;
use crate::data_plane::tls::TlsAcceptor;
use crate::observability::metrics::CountedConnection;
use crate::shutdown::{DrainWatch, Shutdown, ShutdownWatch, Stop};

/// One accepted connection's task: served until it ends or the drain's deadline cuts it, its [`Tokens`] held
/// meanwhile. Every open connection costs this future's size in its task's allocation, idle or not, so it is a
/// plain struct, not an `async` block: an `async fn` keeps its arguments apart from the locals they move into, and
/// the nested ones (accepted, plain HTTP, HTTP/1) carried the socket, the peer and the drain signal three times
/// over. A plain HTTP listener's connection is served inline ([`Http1Serve`]); the paths an idle plain HTTP/1
/// connection is not on (TLS, Proxy Protocol, TCP listeners) are one box ([`serve_accepted`]). A test measures it.
pub(super) fn connection_task(
    stream: TcpStream,
    peer: SocketAddr,
    setup: Arc<Accepting>,
    connections: Arc<Connections>,
    signals: &ListenerSignals,
    tokens: Tokens,
) -> ConnectionTask {
    let shutdown = signals.drain.clone();
    let serve = if setup.layer4.is_none() && !setup.accept_proxy_protocol && setup.tls.is_none() {
        let context = setup.context.clone();
        Accepted::Http1(Http1Serve::new(
            stream,
            peer,
            None,
            context,
            connections,
            shutdown,
        ))
    } else {
        Accepted::Boxed(
            Box::pin(
                async move { serve_accepted(stream, peer, &setup, &connections, shutdown).await },
            ),
            peer,
        )
    };
    ConnectionTask {
        serve,
        // Checked on every wake-up of the connection: a `DrainWatch` is an atomic load there, where a `select!`
        // over the cut's wait re-polled it, taking its waiter list's lock, on each one (and carried it inline).
        stop: DrainWatch::new(signals.drain.clone(), signals.cut.clone()),
        _tokens: tokens,
    }
}

/// The future of one connection's task ([`connection_task`]). The connection is dropped before its tokens.
pub(super) struct ConnectionTask {
    serve: Accepted,
    /// The listener's drain (a plain HTTP/1 connection's: the boxed paths watch it themselves) and the cut.
    stop: DrainWatch,
    _tokens: Tokens,
}

/// How an accepted connection is served. The large variant is the common one, inline on purpose: boxing it
/// would cost every plain connection an allocation to save the rare ones nothing.
#[allow(clippy::large_enum_variant)]
enum Accepted {
    /// Plain HTTP (and h2c from it), inline: most connections, and nearly all idle ones.
    Http1(Http1Serve<TcpStream>),
    /// TLS, Proxy Protocol, TCP and SSL listeners, and the client's address (for the log; a plain connection's
    /// stack has it, so the common variant carries it once).
    Boxed(Pin<Box<dyn Future<Output = ()> + Send>>, SocketAddr),
}

impl Accepted {
    /// The client's address, while it is known here (a plain connection handed over to HTTP/2 has moved it).
    fn peer(&self) -> Option<SocketAddr> {
        match self {
            Accepted::Http1(serve) => match &serve.state {
                Http1State::Http1 { connection, .. } => {
                    Some(connection.service().facts().client.peer())
                }
                _ => None,
            },
            Accepted::Boxed(_, peer) => Some(*peer),
        }
    }

    /// The listener drains: a plain HTTP/1 connection finishes its request in flight and closes (the boxed paths,
    /// and HTTP/2 after the hand-over, watch the drain themselves).
    fn graceful_shutdown(&mut self) {
        if let Accepted::Http1(serve) = self {
            serve.graceful_shutdown();
        }
    }
}

impl Future for ConnectionTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.stop.poll(cx) {
            Stop::Serving => {}
            Stop::Draining => this.serve.graceful_shutdown(),
            Stop::Cut => {
                let peer = this.serve.peer();
                tracing::debug!(?peer, "drain deadline passed; connection closed");
                return Poll::Ready(());
            }
        }
        match &mut this.serve {
            Accepted::Http1(serve) => Pin::new(serve).poll(cx),
            Accepted::Boxed(serve, _) => serve.as_mut().poll(cx),
        }
    }
}

/// One accepted connection on a listener that is not plain HTTP: a TCP/SSL listener's tunnel, or HTTP after the
/// PROXY header (where the listener accepts one) and the TLS handshake (where it has TLS). Boxed by its caller.
///
/// The box is as large as this future's largest path for the connection's whole life, so the paths that are
/// large, or large only for a while, have boxes of their own: a TCP listener's tunnel (10 KiB inline, which every
/// HTTPS connection carried) and the TLS handshake (freed once it is done). An idle HTTPS connection's box went
/// from 10.2 KiB to the HTTP server's state (BENCHMARKS.md "Idle connections").
async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    setup: &Accepting,
    connections: &Arc<Connections>,
    shutdown: Shutdown,
) {
    if let Some(layer4) = &setup.layer4 {
        let tls = setup.tls.as_deref();
        return Box::pin(crate::data_plane::tcp::serve(
            stream,
            peer,
            &setup.context,
            layer4,
            tls,
        ))
        .await;
    }
    if setup.accept_proxy_protocol {
        return serve_proxied(stream, peer, setup, connections, shutdown).await;
    }
    serve_http(stream, peer, setup, connections, shutdown).await
}

/// `accept_proxy_protocol` on an HTTP or HTTPS listener: the connection opens with a PROXY v1 or v2 header (before
/// TLS), and the client it names is the client everywhere elbe uses one (X-Forwarded-For, rules' `source_ip`, the
/// access log), HTTP/1, h2c and h2 alike. A v2 `LOCAL` (the upstream's own health check) keeps the socket's peer.
/// A header that is missing, malformed or not there within the request header timeout closes the connection
/// without a response: what follows is not known to be HTTP, and the upstream is the only one that should connect.
async fn serve_proxied(
    mut stream: TcpStream,
    peer: SocketAddr,
    setup: &Accepting,
    connections: &Arc<Connections>,
    shutdown: Shutdown,
) {
    let idle_timeout = setup.context.routes.load().idle_timeout;
    let timeout = connections.request_header_timeout.min(idle_timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    match proxy_protocol::read_header(&mut stream, deadline).await {
        Ok(opening) => {
            let client = opening.source.unwrap_or(peer);
            let stream = Prefixed::new(opening.rest, stream);
            serve_http(stream, client, setup, connections, shutdown).await
        }
        Err(error) => {
            setup.context.metrics.proxy_protocol_refused.inc();
            tracing::debug!(%peer, %error, "closing a connection without a valid PROXY header");
        }
    }
}

/// HTTP on `stream`: the TLS handshake where the listener has one, then elbe's HTTP/1 server (and HTTP/2 from
/// it). `peer` is the client as elbe knows it: the socket's peer, or the one a PROXY header named.
async fn serve_http<IO>(
    stream: IO,
    peer: SocketAddr,
    setup: &Accepting,
    connections: &Arc<Connections>,
    shutdown: Shutdown,
) where
    IO: ClientStream + Send + 'static,
    TlsStream<IO>: ClientStream,
{
    let context = setup.context.clone();
    match &setup.tls {
        None => {
            Http1Serve::new(stream, peer, None, context, connections.clone(), shutdown)
                .watching_drain()
                .await
        }
        Some(tls) => serve_https(stream, peer, tls, setup, connections, shutdown).await,
    }
}

/// The TLS handshake, then HTTP over it.
async fn serve_https<IO>(
    stream: IO,
    peer: SocketAddr,
    tls: &TlsAcceptor,
    setup: &Accepting,
    connections: &Arc<Connections>,
    shutdown: Shutdown,
) where
    IO: ClientStream + Send + 'static,
    TlsStream<IO>: ClientStream,
{
    // Each in a box of its own: the handshake's state is dropped with its box, and the server's box holds the TLS
    // stream once (awaited inline, this future kept room for the handshake's result beside the server's, 3.3 KiB).
    let handshake = Box::pin(handshake(stream, peer, tls, setup, connections, shutdown));
    let serving = match handshake.await {
        Some(serve) => Box::pin(serve),
        None => return,
    };
    serving.await
}

/// The TLS handshake, and elbe's HTTP server on the stream it opened; `None` when it failed (counted, logged).
async fn handshake<IO>(
    stream: IO,
    peer: SocketAddr,
    tls: &TlsAcceptor,
    setup: &Accepting,
    connections: &Arc<Connections>,
    shutdown: Shutdown,
) -> Option<DrainWatched<TlsStream<IO>>>
where
    IO: ClientStream + Send + 'static,
    TlsStream<IO>: ClientStream,
{
    let context = setup.context.clone();
    match tls.accept(stream, connections.tls_handshake_timeout).await {
        Ok(stream) => {
            context.metrics.tls_handshakes.inc();
            let tls = Some(crate::data_plane::tls::Negotiated::of(stream.get_ref().1));
            let serve = Http1Serve::new(stream, peer, tls, context, connections.clone(), shutdown);
            Some(serve.watching_drain())
        }
        Err(error) => {
            context.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
    }
}

/// elbe's HTTP/1 server on one client connection, then elbe's HTTP/2 server if it opened with the preface: a
/// struct rather than an `async fn`, so that what an idle connection's task holds is the connection and what the
/// hand-over to HTTP/2 needs, each once.
struct Http1Serve<IO: ClientStream> {
    state: Http1State<IO>,
    /// In `elbe_client_connections` until the connection ends, HTTP/2 after the hand-over included.
    _counted: CountedConnection,
}

/// Inline while HTTP/1 (every connection starts so, most stay so); boxed once HTTP/2.
#[allow(clippy::large_enum_variant)]
enum Http1State<IO: ClientStream> {
    Http1 {
        connection: front_end::Connection<IO, proxy::Stack>,
        handover: Handover,
    },
    /// Boxed: hyper's connection is large, and the HTTP/1 connections, most of them idle, should not carry room
    /// for it.
    Http2(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

/// What an HTTP/1 connection keeps for serving it over HTTP/2, beside its stack (from which the listener's context
/// and the client come back).
struct Handover {
    connections: Arc<Connections>,
    shutdown: Shutdown,
}

impl<IO: ClientStream + Send + 'static> Http1Serve<IO> {
    fn new(
        io: IO,
        peer: SocketAddr,
        tls: Option<crate::data_plane::tls::Negotiated>,
        context: Arc<ListenerContext>,
        connections: Arc<Connections>,
        shutdown: Shutdown,
    ) -> Self {
        let counted = CountedConnection::new(&context.metrics.client_connections);
        let idle_timeout = context.routes.load().idle_timeout;
        // DESIGN.md "Client timers never outlast ELB's": the header timer (and with it the silent-connection
        // timer) is elbe's tighter limit, never a looser one than the listener's idle timeout.
        let settings = front_end::Settings {
            max_head_bytes: clamp_u32(connections.max_head_bytes),
            max_headers: clamp_u32(connections.max_headers),
            max_uri_bytes: clamp_u32(context.max_uri_bytes),
            request_header_timeout: connections.request_header_timeout.min(idle_timeout).into(),
            idle_timeout: idle_timeout.into(),
        };
        let client = ClientFacts::new(peer, tls);
        // One sleep for the connection's waits and its requests' exchanges, in turn.
        let timers = crate::http1::io::timer_slot();
        let stack = proxy::stack(context, client, ClientProtocol::Http1, timers);
        Http1Serve {
            state: Http1State::Http1 {
                connection: front_end::Connection::new(io, stack, settings),
                handover: Handover {
                    connections,
                    shutdown,
                },
            },
            _counted: counted,
        }
    }
}

impl<IO: ClientStream> Http1Serve<IO> {
    /// The listener drains: the request in flight finishes, then the connection closes (after the hand-over,
    /// HTTP/2 watches the drain itself).
    fn graceful_shutdown(&mut self) {
        if let Http1State::Http1 { connection, .. } = &mut self.state {
            connection.graceful_shutdown();
        }
    }

    /// For the boxed paths (TLS, Proxy Protocol): the connection watches the drain itself (the one its hand-over
    /// keeps for HTTP/2). A plain connection's task watches it for the connection, with the cut
    /// ([`ConnectionTask`]): one waiter, and no room for a second in every plain connection.
    fn watching_drain(self) -> DrainWatched<IO> {
        let drain = match &self.state {
            Http1State::Http1 { handover, .. } => {
                Some(ShutdownWatch::new(handover.shutdown.clone()))
            }
            _ => None,
        };
        DrainWatched { serve: self, drain }
    }
}

/// An [`Http1Serve`] that watches its listener's drain ([`Http1Serve::watching_drain`]) while it serves HTTP/1:
/// after the hand-over to HTTP/2, whose server watches the drain itself, the watch (and its waiter) is dropped.
struct DrainWatched<IO: ClientStream> {
    serve: Http1Serve<IO>,
    drain: Option<ShutdownWatch>,
}

impl<IO: ClientStream + Send + 'static> Future for DrainWatched<IO> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(drain) = &mut this.drain {
            if drain.poll_fired(cx) {
                this.serve.graceful_shutdown();
            }
        }
        let served = Pin::new(&mut this.serve).poll(cx);
        if !matches!(this.serve.state, Http1State::Http1 { .. }) {
            this.drain = None;
        }
        served
    }
}

impl<IO: ClientStream + Send + 'static> Future for Http1Serve<IO> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                Http1State::Http1 { connection, .. } => {
                    let served = ready!(connection.poll_serve(cx));
                    let Http1State::Http1 {
                        connection,
                        handover,
                        ..
                    } = std::mem::replace(&mut this.state, Http1State::Done)
                    else {
                        return Poll::Ready(());
                    };
                    match served {
                        Ok(Served::Closed) => {}
                        Ok(Served::Http2) => {
                            let (io, read, stack) = connection.into_parts();
                            let ConnectionFacts {
                                context, client, ..
                            } = stack.facts().clone();
                            drop(stack);
                            this.state = Http1State::Http2(Box::pin(async move {
                                let Handover {
                                    connections,
                                    shutdown,
                                } = handover;
                                let peer = client.peer();
                                serve_http2(
                                    io,
                                    read,
                                    peer,
                                    client,
                                    context,
                                    &connections,
                                    shutdown,
                                )
                                .await;
                            }));
                            continue;
                        }
                        Err(error) => {
                            let peer = connection.service().facts().client.peer();
                            tracing::debug!(%peer, %error, "client connection ended with an error");
                        }
                    }
                    return Poll::Ready(());
                }
                Http1State::Http2(serve) => {
                    ready!(serve.as_mut().poll(cx));
                    this.state = Http1State::Done;
                    return Poll::Ready(());
                }
                Http1State::Done => return Poll::Ready(()),
            }
        }
    }
}

/// A limit from the configuration as the connection keeps it.
fn clamp_u32(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

/// A connection that opened with the HTTP/2 preface (`read`: what elbe's HTTP/1 server had read of it), served by
/// elbe's HTTP/2 server ([`server::Connection`]) with ELB's idle timer. Boxed by its caller ([`Http1State::Http2`]).
async fn serve_http2<IO>(
    io: IO,
    read: bytes::Bytes,
    peer: SocketAddr,
    client: ClientFacts,
    context: Arc<ListenerContext>,
    connections: &Connections,
    shutdown: Shutdown,
) where
    IO: ClientStream + Send + 'static,
{
    let metrics = context.metrics.clone();
    let idle_timeout = context.routes.load().idle_timeout;
    let state = Arc::new(ConnectionState::default());
    let underway = Arc::new(Underway::default());
    let io = ClientIo::new(io, state.clone(), underway.clone(), idle_timeout)
        .with_prefix(read)
        .with_metrics(metrics.clone());
    let protocol = ClientProtocol::Http2(state);
    let stack = WebSockets::new(
        proxy::stack(context, client, protocol, crate::http1::io::timer_slot()),
        idle_timeout,
        metrics.clone(),
    );
    let mut http2 = server::Connection::new(io, stack, connections.http2, underway);
    // The drain is checked as the HTTP/1 path checks it: a flag load per wake-up once registered (re-polling a
    // `triggered()` wait would take the signal's waiter lock on every wake-up of the connection).
    let mut stop = ShutdownWatch::new(shutdown);
    let mut draining = false;
    let result = std::future::poll_fn(|cx| {
        if !draining && stop.poll_fired(cx) {
            draining = true;
            http2.graceful_shutdown();
        }
        Pin::new(&mut http2).poll(cx)
    })
    .await;
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "HTTP/2 client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::shutdown::Tracker;
    use tokio::net::TcpListener;

    /// What an idle plain HTTP/1 connection's task carries, in bytes: its future (tokio allocates the task with
    /// room for it) must stay near the HTTP/1 connection's own state, not grow with the TLS handshake, hyper's
    /// HTTP/2 connection, a TCP listener's tunnel (boxed where they start) or a request in flight (the
    /// connection's boxed exchange), nor keep copies of its arguments as nested `async fn`s did (BENCHMARKS.md
    /// "Idle connections"). Over 11 KiB (release) before the boxes, 1,288 bytes (debug) before the exchange and
    /// the struct futures, 536 (debug) before the client's facts were packed (28 bytes, were 64), the hand-over
    /// stopped copying them, the peer left the task and the settings' limits became `u32`s; 408 before the
    /// timeouts became `u32` milliseconds and the drain and cut one watch (with the timer slot the connection now
    /// shares with its stack, 8 bytes); 400 (debug) before the stack kept the connection's context, client and
    /// timer slot once (its layers had four copies of the context and three of the client's address) and the
    /// boxed paths' drain watch left the plain connection's state; now 272 (debug).
    #[tokio::test]
    async fn a_connections_task_is_no_larger_than_its_http1_state() {
        let metrics = crate::observability::metrics::Metrics::new();
        let context = crate::data_plane::proxy::context::test_support::context(&metrics);
        let tracker = Tracker::new();
        let connections = Arc::new(Connections::new(&Limits::default(), tracker.clone()));
        let setup = Arc::new(Accepting {
            context,
            tls: None,
            layer4: None,
            accept_proxy_protocol: false,
        });
        let (_drain, drain) = crate::shutdown::channel();
        let (_cut, cut) = crate::shutdown::channel();
        let signals = ListenerSignals {
            drain,
            cut,
            open: Tracker::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let peer = stream.local_addr().unwrap();
        let tokens = Tokens {
            _permit: connections.limit.clone().acquire_owned().await.unwrap(),
            _open: signals.open.token(),
            _live: tracker.token(),
        };
        let task = connection_task(stream, peer, setup, connections, &signals, tokens);
        let task_bytes = std::mem::size_of_val(&task);
        type Http1 = front_end::Connection<TcpStream, proxy::Stack>;
        let state_bytes = std::mem::size_of::<Http1>();
        println!("connection task future: {task_bytes} bytes; HTTP/1 connection state: {state_bytes} bytes");
        // tokio's task cell is aligned to 128 bytes, and its header, scheduler, stage tag and trailer take about 104
        // more: a future of at most 280 bytes makes a 384-byte task, up to 408 a 512-byte one (heaptrack).
        assert!(
            task_bytes <= state_bytes + 128 && task_bytes <= 280,
            "the task ({task_bytes} bytes) carries more than the HTTP/1 connection ({state_bytes} bytes)"
        );
    }

    /// What a TLS, Proxy Protocol or TCP listener connection's task boxes for its whole life is sized by the
    /// largest path through [`serve_accepted`]: a TCP listener's tunnel (10 KiB inline, which every HTTPS
    /// connection carried) and the TLS handshake have boxes of their own, and so does the HTTPS server (awaited
    /// inline, rustc kept room for the handshake's result beside it). 10,192 bytes (debug) before; 952 now, plus
    /// the HTTPS server's own box.
    #[tokio::test]
    async fn the_boxed_path_of_a_tls_proxied_or_tcp_connection_is_small() {
        let metrics = crate::observability::metrics::Metrics::new();
        let context = crate::data_plane::proxy::context::test_support::context(&metrics);
        let connections = Arc::new(Connections::new(&Limits::default(), Tracker::new()));
        let setup = Accepting {
            context,
            tls: None,
            layer4: None,
            accept_proxy_protocol: false,
        };
        let (_drain, drain) = crate::shutdown::channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let peer = stream.local_addr().unwrap();
        let serve = serve_accepted(stream, peer, &setup, &connections, drain);
        let bytes = std::mem::size_of_val(&serve);
        println!("the boxed path's future: {bytes} bytes");
        assert!(bytes <= 1024, "{bytes} bytes");
    }
}
