//! A node: the thing in one availability zone that accepts client connections (ELB-SPEC.md §3).
//!
//! Each enabled zone's node binds every listener on the zone's own address. An accept loop takes connections up
//! to `max_connections` (beyond that they wait in the kernel's backlog) and serves each with elbe's HTTP/1.x
//! server ([`crate::data_plane::front_end::http1`]); a connection that opens with the HTTP/2 preface (prior knowledge, or ALPN `h2`
//! over TLS) goes on to hyper's HTTP/2 server with ELB's idle timer ([`crate::data_plane::front_end::http2`]). The request
//! path is [`crate::data_plane::proxy::stack`] either way. A listener with `accept_proxy_protocol` (elbe's
//! extension, behind another Layer 4 balancer) first reads the upstream's PROXY header, whose client becomes the
//! connection's client (DESIGN.md "Listener rules": `source_ip` is Proxy Protocol's address then).
//!
//! A reload never rebinds a socket that stays ([`SocketKey`]): the accept loop reads what it serves new
//! connections with from an [`Accepting`] the server swaps, one atomic load per accepted connection. Each listener
//! drains on its own signal ([`ListenerSignals`]), so a reload can retire one listener while the others serve.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower::ServiceExt;

use crate::config::Limits;
use crate::data_plane::body::ConnectionState;
use crate::data_plane::front_end::http1::{self as front_end, ClientStream, Served};
use crate::data_plane::front_end::http2::{ClientIo, Underway, WebSockets};
use crate::data_plane::proxy::{self, ClientFacts, ClientProtocol, ListenerContext};
use crate::data_plane::tcp::prefixed::Prefixed;
use crate::data_plane::tcp::proxy_protocol;
use crate::data_plane::tls::TlsAcceptor;
use crate::shutdown::{Shutdown, ShutdownWatch, Tracker};

/// Streams an HTTP/2 client may have open at once (ALB's and nginx's number).
const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Response bytes h2 buffers per stream beyond what the socket takes. With hyper's 400 KiB a client that opens
/// every flow-control window and reads nothing made one connection cost ~100 MiB (100 streams of downloads,
/// measured with `tests/floods.rs`); with 64 KiB (four full DATA frames) it costs ~45 MiB, most of it the instance
/// reads in flight, and h2load measured the same download throughput with either.
const MAX_SEND_BUF_SIZE: usize = 64 * 1024;

/// What every connection of the process shares: the HTTP server settings, the connection limit and the tracker.
pub(crate) struct Connections {
    http2: http2::Builder<TokioExecutor>,
    max_head_bytes: usize,
    max_headers: usize,
    limit: Arc<Semaphore>,
    tracker: Tracker,
    request_header_timeout: std::time::Duration,
    tls_handshake_timeout: std::time::Duration,
}

impl Connections {
    pub(crate) fn new(limits: &Limits, tracker: Tracker) -> Self {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_send_buf_size(MAX_SEND_BUF_SIZE)
            // SETTINGS_ENABLE_CONNECT_PROTOCOL: HTTP/2 clients' WebSockets (RFC 8441, `front_end::http2`).
            .enable_connect_protocol();
        Connections {
            http2,
            max_head_bytes: limits.max_request_header_bytes,
            max_headers: limits.max_headers,
            // The semaphore is taken once per connection on the accept path, never per request.
            limit: Arc::new(Semaphore::new(limits.max_connections)),
            tracker,
            request_header_timeout: limits.request_header_timeout,
            tls_handshake_timeout: limits.tls_handshake_timeout,
        }
    }

    /// Connections open now, across all listeners.
    pub(crate) fn live(&self) -> usize {
        self.tracker.len()
    }
}

/// Binds `address` for listening with `backlog` connections queued (as tokio's `bind`, with `SO_REUSEADDR`).
///
/// With `freebind` (a listener's `freebind = true`) the socket takes `IP_FREEBIND` first, so the bind succeeds
/// on an address this machine does not hold yet: the standby of a floating-IP pair listens on the VIP before
/// keepalived moves it here and serves the moment it arrives (DESIGN.md "A floating-IP pair"). Linux only;
/// elsewhere asking for it is an `Unsupported` error rather than a bind that fails later for another reason.
pub(crate) fn bind(
    address: std::net::SocketAddr,
    backlog: u32,
    freebind: bool,
) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if freebind {
        set_freebind(&socket, address)?;
    }
    socket.set_nonblocking(true)?;
    let socket = TcpSocket::from_std_stream(socket.into());
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// `IP_FREEBIND` (or `IPV6_FREEBIND`) on `socket`, for [`bind`].
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_freebind(socket: &socket2::Socket, address: std::net::SocketAddr) -> std::io::Result<()> {
    match address {
        std::net::SocketAddr::V4(_) => socket.set_freebind_v4(true),
        std::net::SocketAddr::V6(_) => socket.set_freebind_v6(true),
    }
}

/// `IP_FREEBIND` is Linux's; elsewhere the listener's `freebind = true` cannot be honoured.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_freebind(_: &socket2::Socket, _: std::net::SocketAddr) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "freebind (IP_FREEBIND) is Linux-only",
    ))
}

/// The backlog the kernel will grant for `configured`: it silently caps `listen(2)` at `net.core.somaxconn`, so
/// elbe reads that (Linux) and says so once at start when the configured value is over it.
pub(crate) fn listen_backlog(configured: u32) -> u32 {
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    match cap {
        Some(cap) if cap < configured => {
            tracing::warn!(
                listen_backlog = configured,
                somaxconn = cap,
                "the kernel caps listen_backlog at net.core.somaxconn; raise it (sysctl) for bursts of connects"
            );
            cap
        }
        _ => configured,
    }
}

/// Which socket a node listener is, the identity that survives a reload: the node's address and port, or for a
/// listener on port 0 (any free port) its load balancer and its place among that load balancer's listeners. Two
/// configurations whose listeners have the same key share the bound socket: a reload never rebinds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SocketKey {
    Port(IpAddr, u16),
    AnyPort {
        load_balancer: Arc<str>,
        node: IpAddr,
        index: usize,
    },
}

impl SocketKey {
    /// The key of listener `index` of `load_balancer` on the node at `node`, configured on `port`.
    pub(crate) fn of(load_balancer: &Arc<str>, node: IpAddr, index: usize, port: u16) -> SocketKey {
        if port == 0 {
            SocketKey::AnyPort {
                load_balancer: load_balancer.clone(),
                node,
                index,
            }
        } else {
            SocketKey::Port(node, port)
        }
    }
}

/// What a listener serves its next connections with: swapped whole by a reload (new protocol, certificates,
/// access log, attributes) while the socket stays bound. Connections already open keep what they started with,
/// except the routes, which every version shares and the control plane swaps.
pub(crate) struct Accepting {
    pub context: Arc<ListenerContext>,
    /// HTTPS and SSL: the handshake's configuration (certificates, policy).
    pub tls: Option<Arc<TlsAcceptor>>,
    /// TCP and SSL listeners: bytes pass through ([`crate::data_plane::tcp`]) instead of elbe's HTTP server. A
    /// reload may switch a kept socket between the two: the connections that follow get the new kind.
    pub layer4: Option<Arc<crate::data_plane::tcp::Layer4>>,
    /// `accept_proxy_protocol` (elbe's extension): each connection opens with a PROXY header from a trusted
    /// upstream, whose client is the client ([`serve_proxied`]; TCP and SSL listeners read theirs in `tcp`).
    pub accept_proxy_protocol: bool,
}

/// A listener's [`Accepting`], loaded once per accepted connection (one atomic load, off the request path).
pub(crate) type SharedAccepting = Arc<ArcSwap<Accepting>>;

/// How one listener stops, apart from the others: `drain` stops its accept loop (the socket closes, new
/// connections are refused) and asks its connections to finish their in-flight requests and close (idle
/// keep-alive connections close at once); `cut` drops the connections still open (the drain's deadline passed);
/// `open` counts them, so the drain can end early. SIGTERM drains every listener the same way.
#[derive(Clone)]
pub(crate) struct ListenerSignals {
    pub drain: Shutdown,
    pub cut: Shutdown,
    pub open: Tracker,
}

/// Accepts connections on one listener of one node until it is drained. With TLS, each connection's handshake
/// runs on its own task (bounded by `tls_handshake_timeout`), so slow or half-open handshakes never hold up the
/// accept loop or other clients.
pub(crate) async fn serve_listener(
    listener: TcpListener,
    accepting: SharedAccepting,
    connections: Arc<Connections>,
    signals: ListenerSignals,
) {
    let mut drain = signals.drain.clone();
    loop {
        let permit = tokio::select! {
            permit = connections.limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = drain.triggered() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = drain.triggered() => return,
        };
        let _ = stream.set_nodelay(true);
        let tokens = Tokens {
            _permit: permit,
            _open: signals.open.token(),
            _live: connections.tracker.token(),
        };
        let setup = accepting.load_full();
        tokio::spawn(connection_task(
            stream,
            peer,
            setup,
            connections.clone(),
            &signals,
            tokens,
        ));
    }
}

/// What an open connection holds until it ends: its place under `max_connections`, and its counts on its
/// listener (for the drain) and on the process (for shutdown). Held for their drop, never read.
struct Tokens {
    _permit: OwnedSemaphorePermit,
    _open: TaskTrackerToken,
    _live: TaskTrackerToken,
}

/// One accepted connection's task: served until it ends or the drain's deadline cuts it, its [`Tokens`] held
/// meanwhile. Every open connection costs this future's size in its task's allocation, idle or not, so the
/// paths an idle plain HTTP/1 connection is not on (TLS, HTTP/2, Proxy Protocol, TCP listeners) are boxed where
/// they start and the future is no larger than that connection's own state (a test measures it).
fn connection_task(
    stream: TcpStream,
    peer: SocketAddr,
    setup: Arc<Accepting>,
    connections: Arc<Connections>,
    signals: &ListenerSignals,
    tokens: Tokens,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let shutdown = signals.drain.clone();
    // Checked on every wake-up of the connection: a `ShutdownWatch` is an atomic load there, where a `select!`
    // over the cut's wait re-polled it, taking its waiter list's lock, on each one (and carried it inline).
    let mut cut = ShutdownWatch::new(signals.cut.clone());
    async move {
        let serve = serve_accepted(stream, peer, &setup, &connections, shutdown);
        let mut serve = std::pin::pin!(serve);
        let cut_short = std::future::poll_fn(|cx| {
            if cut.poll_fired(cx) {
                return std::task::Poll::Ready(true);
            }
            serve.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if cut_short {
            tracing::debug!(%peer, "drain deadline passed; connection closed");
        }
        drop(tokens);
    }
}

/// One accepted connection: a TCP/SSL listener's tunnel, or HTTP (after the PROXY header where the listener
/// accepts one). A listener without the option pays one bool test here and serves the bare socket.
async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    setup: &Accepting,
    connections: &Connections,
    shutdown: Shutdown,
) {
    if let Some(layer4) = &setup.layer4 {
        let tls = setup.tls.as_deref();
        let tunnel = crate::data_plane::tcp::serve(stream, peer, &setup.context, layer4, tls);
        return Box::pin(tunnel).await;
    }
    if setup.accept_proxy_protocol {
        return Box::pin(serve_proxied(stream, peer, setup, connections, shutdown)).await;
    }
    if let Some(tls) = &setup.tls {
        return Box::pin(serve_https(stream, peer, tls, setup, connections, shutdown)).await;
    }
    let context = setup.context.clone();
    serve_connection(stream, peer, None, context, connections, shutdown).await
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
    connections: &Connections,
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
    connections: &Connections,
    shutdown: Shutdown,
) where
    IO: ClientStream + Send + 'static,
    TlsStream<IO>: ClientStream,
{
    let context = setup.context.clone();
    match &setup.tls {
        None => serve_connection(stream, peer, None, context, connections, shutdown).await,
        Some(tls) => serve_https(stream, peer, tls, setup, connections, shutdown).await,
    }
}

/// The TLS handshake, then HTTP over it.
async fn serve_https<IO>(
    stream: IO,
    peer: SocketAddr,
    tls: &TlsAcceptor,
    setup: &Accepting,
    connections: &Connections,
    shutdown: Shutdown,
) where
    IO: ClientStream + Send + 'static,
    TlsStream<IO>: ClientStream,
{
    let context = setup.context.clone();
    match tls.accept(stream, connections.tls_handshake_timeout).await {
        Ok(stream) => {
            context.metrics.tls_handshakes.inc();
            let info = crate::data_plane::tls::handshake_info(stream.get_ref().1);
            let tls = Some((info.cipher, info.protocol));
            serve_connection(stream, peer, tls, context, connections, shutdown).await
        }
        Err(error) => {
            context.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, %error, "TLS handshake failed");
        }
    }
}

async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    tls: Option<(&'static str, &'static str)>,
    context: Arc<ListenerContext>,
    connections: &Connections,
    shutdown: Shutdown,
) where
    IO: ClientStream + Send + 'static,
{
    let metrics = context.metrics.clone();
    metrics.client_connections.inc();
    let idle_timeout = context.routes.load().idle_timeout;
    // DESIGN.md "Client timers never outlast ELB's": the header timer (and with it the silent-connection timer)
    // is elbe's tighter limit, never a looser one than the listener's idle timeout.
    let settings = front_end::Settings {
        max_head_bytes: connections.max_head_bytes,
        max_headers: connections.max_headers,
        max_uri_bytes: context.max_uri_bytes,
        request_header_timeout: connections.request_header_timeout.min(idle_timeout),
        idle_timeout,
    };
    let client = ClientFacts { peer, tls };
    let stack = proxy::stack(context.clone(), client, ClientProtocol::Http1);
    let mut connection = front_end::Connection::new(io, stack, settings, metrics.clone());
    let mut stop = ShutdownWatch::new(shutdown.clone());
    let served = std::future::poll_fn(|cx| {
        if stop.poll_fired(cx) {
            connection.graceful_shutdown();
        }
        connection.poll_serve(cx)
    })
    .await;
    match served {
        Ok(Served::Closed) => {}
        Ok(Served::Http2) => {
            let (io, read) = connection.into_parts();
            let http2 = serve_http2(io, read, peer, client, context, connections, shutdown);
            Box::pin(http2).await;
        }
        Err(error) => tracing::debug!(%peer, %error, "client connection ended with an error"),
    }
    metrics.client_connections.dec();
}

/// A connection that opened with the HTTP/2 preface (`read`: what elbe's HTTP/1 server had read of it), served by
/// hyper's HTTP/2 server with ELB's idle timer. Boxed by its caller: hyper's connection is large, and the
/// HTTP/1 connections, most of them idle, should not carry room for it.
async fn serve_http2<IO>(
    io: IO,
    read: bytes::Bytes,
    peer: SocketAddr,
    client: ClientFacts,
    context: Arc<ListenerContext>,
    connections: &Connections,
    mut shutdown: Shutdown,
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
    // Each response body is counted while under way, for the stalled-response rule of the idle timeout.
    let stack = ServiceExt::<http::Request<hyper::body::Incoming>>::map_response(
        WebSockets::new(
            proxy::stack(context, client, protocol),
            idle_timeout,
            metrics.clone(),
        ),
        move |response: http::Response<_>| response.map(|body| underway.track(body)),
    );
    let service = TowerToHyperService::new(stack);
    let http2 = connections
        .http2
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(http2);
    let result = tokio::select! {
        result = http2.as_mut() => result,
        _ = shutdown.triggered() => {
            http2.as_mut().graceful_shutdown();
            http2.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "HTTP/2 client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle plain HTTP/1 connection's task carries, in bytes: its future (tokio allocates the task with
    /// room for it) must stay near the HTTP/1 connection's own state, not grow with the TLS handshake, hyper's
    /// HTTP/2 connection or a TCP listener's tunnel, which are boxed where they start (BENCHMARKS.md "Idle
    /// connections"). Before those boxes it was over 11 KiB (release); now it is the connection's state and a
    /// few words (1,288 bytes in a debug build, whose futures keep every local apart).
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
        type Http1 = front_end::Connection<
            TcpStream,
            crate::data_plane::proxy::track::Track<
                crate::data_plane::proxy::check::Check<
                    crate::data_plane::proxy::forwarded::Forwarded<
                        crate::data_plane::proxy::forward::Forward,
                    >,
                >,
            >,
        >;
        let state_bytes = std::mem::size_of::<Http1>();
        println!("connection task future: {task_bytes} bytes; HTTP/1 connection state: {state_bytes} bytes");
        assert!(
            task_bytes <= state_bytes + 1024 && task_bytes <= 2048,
            "the task ({task_bytes} bytes) carries more than the HTTP/1 connection ({state_bytes} bytes)"
        );
    }

    /// 198.18.0.0/15 (RFC 2544's benchmarking range): an address no test machine holds. Nothing is sent to it;
    /// the test only binds.
    const NOT_HERE: &str = "198.18.255.254:0";

    /// With freebind the bind succeeds on an address this machine does not hold (the standby of a floating-IP
    /// pair); without it the kernel refuses it, unless the machine allows it for every socket
    /// (`net.ipv4.ip_nonlocal_bind`), which the assertion reads first.
    #[tokio::test]
    async fn freebind_binds_an_address_the_machine_does_not_hold() {
        let address: SocketAddr = NOT_HERE.parse().unwrap();
        let listener = bind(address, 16, true).expect("freebind binds a foreign address");
        assert_eq!(listener.local_addr().unwrap().ip(), address.ip());
        let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
            .map(|text| text.trim() == "1")
            .unwrap_or(false);
        if !nonlocal {
            let error = bind(address, 16, false).expect_err("an address not on the machine");
            assert_eq!(error.kind(), std::io::ErrorKind::AddrNotAvailable);
        }
        let loopback = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        assert!(loopback.local_addr().unwrap().port() != 0);
    }
}
