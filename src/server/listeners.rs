//! The bound node listeners: one [`Bound`] per socket, with its kind, its accept loop and its own drain.
//!
//! Start and reload go through the same two steps. [`Listeners::bind_new`] binds every socket the configuration
//! wants that is not bound yet and changes nothing, so a bind failure refuses the whole reload; [`Listeners::commit`]
//! then serves the new configuration: a socket kept (same [`SocketKey`]) is never rebound, its accept loop takes
//! the new [`Accepting`] (protocol, certificates, access log, attributes) for the connections that follow; a new
//! socket gets its accept loop; a socket the configuration no longer wants is retired: it stops accepting at once
//! (the socket closes, new connections are refused), its open connections finish their in-flight requests and
//! close (idle keep-alive ones at once), and whatever is still open after `shutdown_grace` is closed. SIGTERM
//! drains every listener the same way (STYLE.md habit 2).
//!
//! The trade-off: every listener has the same accept loop, and what it does with a connection is in its
//! [`Accepting`]: elbe's HTTP server (TLS first for HTTPS), or Layer 4 pass-through for TCP and SSL
//! ([`Layer4`]). So one drain, cut and reload path serves all four protocols, and a kept socket may switch
//! between them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::config::{Config, Listener, Protocol};
use crate::control_plane::control::{NodeListener, ServedZones};
use crate::control_plane::health::probe;
use crate::data_plane::back_end;
use crate::data_plane::headers::ForwardedProto;
use crate::data_plane::node::{self, Accepting, Connections, ListenerSignals, SocketKey};
use crate::data_plane::passive::{PassiveFailure, PassiveReporter};
use crate::data_plane::proxy::{ListenerContext, ListenerLog};
use crate::data_plane::routing::surge::SurgeQueue;
use crate::data_plane::tcp::Layer4;
use crate::data_plane::tls::TlsAcceptor;
use crate::observability::access_log::AccessLog;
use crate::observability::metrics::Metrics;
use crate::server::StartError;
use crate::shutdown::{self, Tracker, Trigger};

/// One bound listener of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    /// The load balancer's name.
    pub load_balancer: String,
    /// The zone whose node bound it.
    pub zone: String,
    /// ELB's `Protocol`: what clients speak to it.
    pub protocol: Protocol,
    /// The bound address (the real port when the configuration said 0).
    pub address: SocketAddr,
}

/// How a bound listener serves what it accepts.
enum Kind {
    /// HTTP and HTTPS: elbe's HTTP server ([`node::serve_listener`]), TLS first for HTTPS.
    Http(node::SharedAccepting),
}

/// One bound socket and everything that serves it.
struct Bound {
    key: SocketKey,
    info: BoundListener,
    kind: Kind,
    /// Stops the accept loop and asks the connections to finish (this listener only).
    drain: Trigger,
    /// Closes the connections still open once the drain's deadline passed.
    cut: Trigger,
    /// This listener's open connections.
    open: Tracker,
    accept_loop: JoinHandle<()>,
}

/// Every bound node listener, in configuration order.
#[derive(Default)]
pub(super) struct Listeners {
    bound: Vec<Bound>,
    /// The TLS clients to instances the listeners were last served with, kept across reloads where their
    /// `backend_ca` did not change.
    instance_clients: InstanceClients,
    /// The accept loops of listeners retired by the last commits: each ends (and closes its socket) as soon as
    /// it runs; the server waits for them, so an address given up is free when the change is answered.
    retired: Vec<JoinHandle<()>>,
}

/// Sockets bound for a configuration and not yet served (dropping them closes them: a refused reload).
pub(super) type Fresh = HashMap<SocketKey, (TcpListener, SocketAddr)>;

/// One listener of one node the configuration wants, as binding needs it.
struct Wanted {
    key: SocketKey,
    what: String,
    address: SocketAddr,
    /// The listener's `freebind`: bind even if the node's address is not on this machine (yet).
    freebind: bool,
}

/// Every node listener `config` wants, in the order the control plane keeps them (load balancer, zone, listener).
fn wanted(config: &Config, served: &ServedZones) -> Result<Vec<Wanted>, StartError> {
    let mut wanted = Vec::new();
    for lb in &config.load_balancers {
        let name: Arc<str> = lb.name.as_str().into();
        // Only this process's zones: in cluster mode the others' nodes run in other processes.
        for zone in lb
            .availability_zones
            .iter()
            .filter(|z| served.serves(&z.name))
        {
            for (index, listener) in lb.listeners.iter().enumerate() {
                wanted.push(Wanted {
                    key: SocketKey::of(&name, zone.node, index, listener.load_balancer_port),
                    what: format!("{} {} {} listener", lb.name, zone.name, listener.protocol),
                    address: SocketAddr::new(zone.node, listener.load_balancer_port),
                    freebind: listener.freebind,
                });
            }
        }
    }
    Ok(wanted)
}

/// Binds `address` for `what` (a listener, the admin endpoint) with `backlog` connections queued.
pub(super) fn bind(
    address: SocketAddr,
    what: &str,
    backlog: u32,
) -> Result<(TcpListener, SocketAddr), StartError> {
    bind_maybe_free(address, what, backlog, false)
}

/// [`bind`], and with `freebind` even when this machine does not hold `address` yet (`node::bind`).
fn bind_maybe_free(
    address: SocketAddr,
    what: &str,
    backlog: u32,
    freebind: bool,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Bind {
        address,
        what: what.into(),
        source,
    };
    let socket = node::bind(address, backlog, freebind).map_err(failed)?;
    let bound = socket.local_addr().map_err(failed)?;
    Ok((socket, bound))
}

/// A configuration's TLS, both ways: the acceptors of its HTTPS/SSL listeners and the clients its listeners speak
/// to HTTPS/SSL instances with.
pub(super) struct Tls {
    /// By (load balancer, listener position).
    acceptors: HashMap<(String, usize), Arc<TlsAcceptor>>,
    /// By (load balancer, instance port).
    instance_clients: InstanceClients,
}

/// The TLS clients to instances, by (load balancer, instance port): one per port, so every listener and node
/// reaching the port shares it, and with it the pooled connections made with it (a pooled connection is reused
/// only by the client that made it, `back_end::pool`).
type InstanceClients = HashMap<(String, u16), InstanceClient>;

#[derive(Clone)]
struct InstanceClient {
    /// The port's `backend_ca` certificates; `None`: the process's unverified client.
    ca: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    config: Arc<rustls::ClientConfig>,
}

/// The TLS clients of every instance port some listener speaks HTTPS or SSL to: verifying against the port's
/// `backend_ca` (its `[[load_balancer.backend_server]]`) when it has one, else the unverified client the health
/// checks use too (ELB-SPEC §12: no SNI, no verification).
fn instance_clients(config: &Config) -> Result<InstanceClients, StartError> {
    let mut clients = InstanceClients::new();
    for lb in &config.load_balancers {
        for listener in lb
            .listeners
            .iter()
            .filter(|l| l.instance_protocol.is_secure())
        {
            let port = listener.instance_port;
            if clients.contains_key(&(lb.name.clone(), port)) {
                continue;
            }
            let ca = lb
                .backend_servers
                .iter()
                .find(|server| server.instance_port == port)
                .and_then(|server| server.backend_ca.as_ref())
                .map(|ca| ca.certificates.clone());
            let built = match &ca {
                Some(ca) => back_end::tls::verifying(ca),
                None => probe::tls::client_config(),
            };
            let config = built.map_err(|source| StartError::InstanceTls {
                load_balancer: lb.name.clone(),
                instance_port: port,
                source,
            })?;
            clients.insert((lb.name.clone(), port), InstanceClient { ca, config });
        }
    }
    Ok(clients)
}

/// `fresh`, with the client kept from `old` wherever a port's `backend_ca` did not change: a reload that leaves the
/// CA alone keeps the pooled connections made with it.
fn keep_unchanged(old: &InstanceClients, fresh: &InstanceClients) -> InstanceClients {
    fresh
        .iter()
        .map(|(key, client)| {
            let kept = old.get(key).filter(|old| old.ca == client.ca);
            (key.clone(), kept.unwrap_or(client).clone())
        })
        .collect()
}

/// One TLS acceptor per configured HTTPS and SSL listener, by (load balancer, listener position), shared by its
/// nodes (one session cache), and the TLS clients to HTTPS/SSL instances. Every certificate loads and every client
/// builds, or none is used.
pub(super) fn tls_acceptors(config: &Config) -> Result<Tls, StartError> {
    let mut acceptors = HashMap::new();
    for lb in &config.load_balancers {
        for (index, listener) in lb.listeners.iter().enumerate() {
            if !listener.protocol.is_secure() {
                continue;
            }
            let (paths, policy) = (&listener.certificates, listener.ssl_policy.as_deref());
            let built = if listener.protocol.is_http() {
                TlsAcceptor::new(paths, policy)
            } else {
                TlsAcceptor::without_alpn(paths, policy)
            };
            let acceptor = built.map_err(|source| StartError::Tls {
                load_balancer: lb.name.clone(),
                port: listener.load_balancer_port,
                source: Box::new(source),
            })?;
            acceptors.insert((lb.name.clone(), index), Arc::new(acceptor));
        }
    }
    Ok(Tls {
        acceptors,
        instance_clients: instance_clients(config)?,
    })
}

/// What building a listener's [`Accepting`] reads, beyond the node listener itself.
pub(super) struct Serving<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub logs: &'a HashMap<String, AccessLog>,
    pub tls: &'a Tls,
    pub passive: &'a UnboundedSender<PassiveFailure>,
    pub connections: &'a Arc<Connections>,
    pub shutdown_grace: Duration,
    /// The `ConnectionDraining` timeout of each load balancer that had it on before this change: a listener
    /// it loses lets its connections finish for that long (not less than `shutdown_grace`).
    pub drain_deadlines: &'a HashMap<String, Duration>,
}

/// A node listener as the control plane holds it after a publish: its socket and shared snapshot.
pub(super) struct Node {
    key: SocketKey,
    load_balancer: Arc<str>,
    zone: Arc<str>,
    node: IpAddr,
    index: usize,
    listener: Listener,
    routes: crate::data_plane::snapshot::SharedNodeSnapshot,
}

/// Reads the control plane's node listeners.
pub(super) fn nodes(listeners: &[NodeListener]) -> Vec<Node> {
    listeners
        .iter()
        .map(|n| Node {
            key: n.socket_key(),
            load_balancer: n.load_balancer.clone(),
            zone: n.zone.clone(),
            node: n.node,
            index: n.listener_index,
            listener: n.listener.clone(),
            routes: n.routes.clone(),
        })
        .collect()
}

impl Serving<'_> {
    /// What `node`'s listener serves its next connections with, speaking to HTTPS/SSL instances with `clients`.
    fn accepting(&self, node: &Node, address: SocketAddr, clients: &InstanceClients) -> Accepting {
        let limits = &self.config.limits;
        let load_balancer = &*node.load_balancer;
        let protocol = node.listener.protocol;
        let lb = self
            .config
            .load_balancers
            .iter()
            .find(|lb| lb.name == load_balancer);
        let context = ListenerContext {
            routes: node.routes.clone(),
            proto: if protocol == Protocol::Https {
                ForwardedProto::https()
            } else {
                ForwardedProto::http()
            },
            port: HeaderValue::from(address.port()),
            node_host: HeaderValue::from_str(&node.node.to_string())
                .unwrap_or(HeaderValue::from_static("localhost")),
            max_uri_bytes: limits.max_uri_bytes,
            metrics: Arc::new(self.metrics.zone(load_balancer, &node.zone)),
            access_log: self.logs.get(load_balancer).map(|log| ListenerLog {
                log: log.clone(),
                load_balancer: node.load_balancer.clone(),
                scheme: if protocol.is_secure() {
                    "https"
                } else {
                    "http"
                },
                port: address.port(),
            }),
            surge: SurgeQueue::new(limits.backend_max_requests, limits.surge_queue_size),
            passive: lb
                .filter(|lb| lb.passive_health_checks)
                .map(|_| PassiveReporter {
                    load_balancer: node.load_balancer.clone(),
                    events: self.passive.clone(),
                }),
            instance_tls: instance_client(clients, load_balancer, &node.listener, Protocol::Https),
        };
        let layer4 = (!protocol.is_http()).then(|| {
            let instance_tls =
                instance_client(clients, load_balancer, &node.listener, Protocol::Ssl);
            Arc::new(Layer4::new(
                self.config,
                load_balancer,
                &node.listener,
                SocketAddr::new(node.node, address.port()),
                instance_tls,
            ))
        });
        Accepting {
            context: Arc::new(context),
            tls: self
                .tls
                .acceptors
                .get(&(load_balancer.to_string(), node.index))
                .cloned(),
            layer4,
            accept_proxy_protocol: node.listener.accept_proxy_protocol,
        }
    }
}

/// The TLS client of `listener`'s instance port when it speaks `secure` (HTTPS or SSL) to it; `None` otherwise.
/// `clients` holds every secure port of the same configuration (`instance_clients`).
fn instance_client(
    clients: &InstanceClients,
    load_balancer: &str,
    listener: &Listener,
    secure: Protocol,
) -> Option<Arc<rustls::ClientConfig>> {
    if listener.instance_protocol != secure {
        return None;
    }
    let key = (load_balancer.to_owned(), listener.instance_port);
    clients.get(&key).map(|client| client.config.clone())
}

impl Listeners {
    /// Binds every socket `config` wants that is not bound yet. Nothing is served or closed here: on any error
    /// the sockets bound so far close and the running listeners are untouched.
    pub(super) fn bind_new(
        &self,
        config: &Config,
        served: &ServedZones,
    ) -> Result<Fresh, StartError> {
        let backlog = node::listen_backlog(config.limits.listen_backlog);
        let mut fresh = Fresh::new();
        for wanted in wanted(config, served)? {
            if self.bound.iter().any(|b| b.key == wanted.key) || fresh.contains_key(&wanted.key) {
                continue;
            }
            fresh.insert(
                wanted.key,
                bind_maybe_free(wanted.address, &wanted.what, backlog, wanted.freebind)?,
            );
        }
        Ok(fresh)
    }

    /// The address of every socket, kept or `fresh`, for the control plane's `/status` and `/healthz`.
    pub(super) fn addresses(&self, fresh: &Fresh) -> HashMap<SocketKey, SocketAddr> {
        let kept = self.bound.iter().map(|b| (b.key.clone(), b.info.address));
        let new = fresh
            .iter()
            .map(|(key, (_, address))| (key.clone(), *address));
        kept.chain(new).collect()
    }

    /// Serves `nodes` (the configuration just published): kept sockets take their new [`Accepting`], fresh ones
    /// start accepting, the others are retired. Returns the listeners retired.
    pub(super) fn commit(
        &mut self,
        nodes: &[Node],
        mut fresh: Fresh,
        serving: &Serving<'_>,
    ) -> Vec<BoundListener> {
        let mut old = std::mem::take(&mut self.bound);
        self.instance_clients =
            keep_unchanged(&self.instance_clients, &serving.tls.instance_clients);
        let clients = &self.instance_clients;
        for node in nodes {
            let info = |address| BoundListener {
                load_balancer: node.load_balancer.to_string(),
                zone: node.zone.to_string(),
                protocol: node.listener.protocol,
                address,
            };
            if let Some(position) = old.iter().position(|b| b.key == node.key) {
                let mut kept = old.swap_remove(position);
                let Kind::Http(accepting) = &kept.kind;
                accepting.store(Arc::new(serving.accepting(
                    node,
                    kept.info.address,
                    clients,
                )));
                kept.info = info(kept.info.address);
                self.bound.push(kept);
            } else if let Some((socket, address)) = fresh.remove(&node.key) {
                let info = info(address);
                tracing::info!(load_balancer = %info.load_balancer, zone = %info.zone, protocol = %info.protocol, %address, "node listening");
                let accepting = Arc::new(ArcSwap::from_pointee(
                    serving.accepting(node, address, clients),
                ));
                self.bound.push(serve(
                    node.key.clone(),
                    info,
                    socket,
                    accepting,
                    serving.connections,
                ));
            }
        }
        old.into_iter()
            .map(|bound| {
                let info = bound.info.clone();
                tracing::info!(load_balancer = %info.load_balancer, zone = %info.zone, address = %info.address, "listener removed; draining its connections");
                let grace = serving
                    .drain_deadlines
                    .get(&info.load_balancer)
                    .map_or(serving.shutdown_grace, |drain| (*drain).max(serving.shutdown_grace));
                self.retired.push(retire(bound, grace));
                info
            })
            .collect()
    }

    /// The accept loops of the listeners retired since the last call (see [`Listeners::retired`]).
    pub(super) fn take_retired(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.retired)
    }

    /// Every bound listener, in configuration order.
    pub(super) fn infos(&self) -> Vec<BoundListener> {
        self.bound.iter().map(|b| b.info.clone()).collect()
    }

    /// SIGTERM: every listener stops accepting and its connections finish their in-flight requests.
    pub(super) fn drain_all(&self) {
        for bound in &self.bound {
            bound.drain.trigger();
            bound.open.close();
        }
    }

    /// The shutdown grace passed: the connections still open close (drained first, then cut), the accept loops end.
    pub(super) fn cut_all(&self) {
        for bound in &self.bound {
            bound.drain.trigger();
            bound.cut.trigger();
            bound.accept_loop.abort();
        }
    }
}

/// Starts the accept loop of a freshly bound socket.
fn serve(
    key: SocketKey,
    info: BoundListener,
    socket: TcpListener,
    accepting: node::SharedAccepting,
    connections: &Arc<Connections>,
) -> Bound {
    let (drain, drained) = shutdown::channel();
    let (cut, cutting) = shutdown::channel();
    let open = Tracker::new();
    let signals = ListenerSignals {
        drain: drained,
        cut: cutting,
        open: open.clone(),
    };
    let accept_loop = tokio::spawn(node::serve_listener(
        socket,
        accepting.clone(),
        connections.clone(),
        signals,
    ));
    Bound {
        key,
        info,
        kind: Kind::Http(accepting),
        drain,
        cut,
        open,
        accept_loop,
    }
}

/// A listener the configuration no longer has: it stops accepting now; its connections get `grace` to finish,
/// then the ones left are closed. Returns its accept loop, which ends at once (its socket closes) now that the drain is triggered.
fn retire(bound: Bound, grace: Duration) -> JoinHandle<()> {
    bound.drain.trigger();
    bound.open.close();
    let Bound {
        key,
        info,
        kind,
        drain,
        cut,
        open,
        accept_loop,
    } = bound;
    tokio::spawn(async move {
        // Kept until the connections are done: what serves them.
        let _serving = (key, kind, drain);
        if tokio::time::timeout(grace, open.wait()).await.is_err() {
            tracing::warn!(
                address = %info.address,
                live = open.len(),
                "the drain deadline ran out on a removed listener; closing its remaining connections"
            );
        }
        cut.trigger();
    });
    accept_loop
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration whose HTTP listener speaks HTTPS to instance port 443, verified by `ca` when given.
    fn config(ca: Option<&str>) -> Config {
        let backend_server = ca.map_or(String::new(), |ca| {
            format!(
                "[[load_balancer.backend_server]]\ninstance_port = 443\nbackend_ca = \"{ca}\"\n"
            )
        });
        let text = format!(
            "[[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"a\"\nnode = \"127.0.0.1\"\n\
             [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTPS\"\n\
             instance_port = 443\n{backend_server}"
        );
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/elbe.toml");
        crate::config::parse(&text, &file).unwrap()
    }

    fn client(clients: &InstanceClients) -> Arc<rustls::ClientConfig> {
        clients[&("web".to_owned(), 443)].config.clone()
    }

    #[test]
    fn a_reload_keeps_an_instance_ports_tls_client_while_its_backend_ca_is_the_same() {
        let first = instance_clients(&config(Some("dev-ca.crt"))).unwrap();
        let again = keep_unchanged(
            &first,
            &instance_clients(&config(Some("dev-ca.crt"))).unwrap(),
        );
        assert!(
            Arc::ptr_eq(&client(&first), &client(&again)),
            "same CA: same client, pooled connections kept"
        );
        let other = keep_unchanged(
            &again,
            &instance_clients(&config(Some("localhost.crt"))).unwrap(),
        );
        assert!(
            !Arc::ptr_eq(&client(&again), &client(&other)),
            "another CA: a new client"
        );
        let none = keep_unchanged(&other, &instance_clients(&config(None)).unwrap());
        assert!(
            Arc::ptr_eq(&client(&none), &probe::tls::client_config().unwrap()),
            "no backend_ca: the process's unverified client"
        );
    }
}
