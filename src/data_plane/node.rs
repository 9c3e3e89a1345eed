//! A node: the thing in one availability zone that accepts client connections (ELB-SPEC.md §3).
//!
//! Each enabled zone's node binds every listener on the zone's own address. An accept loop takes connections up
//! to `max_connections` (beyond that they wait in the kernel's backlog) and serves each with elbe's HTTP/1.x
//! server ([`crate::data_plane::front_end::http1`]); a connection that opens with the HTTP/2 preface (prior knowledge, or ALPN `h2`
//! over TLS) goes on to elbe's HTTP/2 server with ELB's idle timer ([`crate::data_plane::front_end::http2`]). The request
//! path is [`crate::data_plane::proxy::stack`] either way. A listener with `accept_proxy_protocol` (elbe's
//! extension, behind another Layer 4 balancer) first reads the upstream's PROXY header, whose client becomes the
//! connection's client (DESIGN.md "Listener rules": `source_ip` is Proxy Protocol's address then).
//!
//! A reload never rebinds a socket that stays ([`SocketKey`]): the accept loop reads what it serves new
//! connections with from an [`Accepting`] the server swaps, one atomic load per accepted connection. Each listener
//! drains on its own signal ([`ListenerSignals`]), so a reload can retire one listener while the others serve.

mod connection;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::config::Limits;
use crate::data_plane::front_end::http2::server::ServerSettings;
use crate::data_plane::proxy::ListenerContext;
use crate::data_plane::tls::TlsAcceptor;
use crate::shutdown::{Shutdown, Tracker};
use connection::connection_task;

/// Streams an HTTP/2 client may have open at once (ALB's and nginx's number).
const MAX_CONCURRENT_STREAMS: u32 = 128;

/// What an HTTP/2 client may send before elbe gives the window back: per stream (SETTINGS_INITIAL_WINDOW_SIZE),
/// and on the connection. A request body is held at most this long while its instance is slow to take it.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// SETTINGS_MAX_HEADER_LIST_SIZE: a request's fields, decoded, as RFC 7541 §4.1 counts them (hyper's default,
/// which elbe kept): a block past it ends the connection (`ENHANCE_YOUR_CALM`).
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// What every connection of the process shares: the HTTP server settings, the connection limit and the tracker.
pub(crate) struct Connections {
    http2: ServerSettings,
    max_head_bytes: usize,
    max_headers: usize,
    limit: Arc<Semaphore>,
    tracker: Tracker,
    request_header_timeout: std::time::Duration,
    tls_handshake_timeout: std::time::Duration,
}

impl Connections {
    pub(crate) fn new(limits: &Limits, tracker: Tracker) -> Self {
        let http2 = ServerSettings {
            max_concurrent_streams: MAX_CONCURRENT_STREAMS,
            stream_window: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            max_header_list_size: MAX_HEADER_LIST_SIZE,
        };
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

/// Connections accepted in a row before the accept loop lets the worker poll its sockets
/// ([`serve_listener`]).
const ACCEPT_BATCH: usize = 8;

/// Accepts connections on one listener of one node until it is drained. With TLS, each connection's handshake
/// runs on its own task (bounded by `tls_handshake_timeout`), so slow or half-open handshakes never hold up the
/// accept loop or other clients.
///
/// After [`ACCEPT_BATCH`] connections in a row the loop yields, and tokio polls the sockets before it runs again:
/// a backlog of new clients is then served in small batches, each request's answer read (and its instance's
/// connection pooled again) before the next batch takes more. Without it, one poll of the loop accepted as many
/// clients as tokio's budget allowed (about 60), each opened a connection to its instance before any answer was
/// read, and a burst of 8,000 clients opened 3,000-4,000 instance connections and held 17 KiB of buffers per
/// request at its peak, memory the allocator then kept (BENCHMARKS.md "Idle connections").
pub(crate) async fn serve_listener(
    listener: TcpListener,
    accepting: SharedAccepting,
    connections: Arc<Connections>,
    signals: ListenerSignals,
) {
    let mut drain = signals.drain.clone();
    let mut in_a_row = 0;
    loop {
        in_a_row += 1;
        if in_a_row > ACCEPT_BATCH {
            in_a_row = 1;
            tokio::task::yield_now().await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

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

    /// A backlog of clients is taken [`ACCEPT_BATCH`] at a time, other tasks running in between (the sockets'
    /// answers, in elbe): a task that looks after each of its own yields never sees more than a batch accepted
    /// since it last looked. Without the yield, one poll of the loop took the whole backlog of 40.
    #[tokio::test]
    async fn a_backlog_of_clients_is_accepted_a_batch_at_a_time() {
        let metrics = crate::observability::metrics::Metrics::new();
        let context = crate::data_plane::proxy::context::test_support::context(&metrics);
        let connections = Arc::new(Connections::new(&Limits::default(), Tracker::new()));
        let accepting = Arc::new(ArcSwap::from_pointee(Accepting {
            context,
            tls: None,
            layer4: None,
            accept_proxy_protocol: false,
        }));
        let listener = bind("127.0.0.1:0".parse().unwrap(), 64, false).unwrap();
        let address = listener.local_addr().unwrap();
        // Connected before the loop starts: the kernel completes them and queues them in the backlog.
        let clients: Vec<_> = (0..40)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        let (_drain, drain) = crate::shutdown::channel();
        let (_cut, cut) = crate::shutdown::channel();
        let open = Tracker::new();
        let signals = ListenerSignals {
            drain,
            cut,
            open: open.clone(),
        };
        tokio::spawn(serve_listener(listener, accepting, connections, signals));
        let mut seen = 0;
        let mut largest_step = 0;
        for _ in 0..1000 {
            tokio::task::yield_now().await;
            let now = open.len();
            largest_step = largest_step.max(now - seen);
            seen = now;
            if seen == clients.len() {
                break;
            }
        }
        assert_eq!(seen, clients.len(), "every client is accepted");
        assert!(
            largest_step <= ACCEPT_BATCH,
            "{largest_step} clients accepted between two looks"
        );
    }
}
