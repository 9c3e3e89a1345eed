//! Starting and stopping elbe: the control plane, every node's listeners, and the admin listener.
//!
//! [`start`] binds everything (port 0 means any free port; the bound addresses are read back and reported) and
//! returns a [`Server`] handle; [`Server::shutdown`] stops accepting, lets in-flight requests finish within the drain
//! deadline, then stops. `elbe run`, the demo and the integration tests all go through these two functions.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{AccessLogDestination, Config, InstanceAddress, Protocol};
use crate::control_plane::admin::{self, Admin};
use crate::control_plane::control::Control;
use crate::control_plane::discovery::Discovery;
use crate::control_plane::state_dir::{self, StateDirError};
use crate::data_plane::headers::ForwardedProto;
use crate::data_plane::node::{self, Connections};
use crate::data_plane::passive::PassiveReporter;
use crate::data_plane::proxy::{ListenerContext, ListenerLog};
use crate::data_plane::routing::surge::SurgeQueue;
use crate::data_plane::tcp::{self, Layer4};
use crate::data_plane::tls::TlsAcceptor;
use crate::observability::access_log::{AccessLog, Destination, WriterHandle};
use crate::observability::metrics::Metrics;
use crate::shutdown::{self, Tracker, Trigger};

pub use crate::control_plane::control::status::{
    ConfigStatus, DnsStatus, InstanceStatus, ListenerStatus, LoadBalancerStatus, NodeStatus,
    Status, Unhealthy,
};
pub use crate::control_plane::discovery::DiscoveryError;
pub use crate::data_plane::tls::TlsError;

/// Why elbe could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address} ({what}): {source}")]
    Bind {
        address: SocketAddr,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Resolve(#[from] UnresolvedInstance),
    #[error("DNS discovery: {0}")]
    Discovery(#[source] DiscoveryError),
    #[error("load balancer {load_balancer}: access log: {source}")]
    AccessLog {
        load_balancer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    StateDir(#[from] StateDirError),
    #[error("load balancer {load_balancer}, listener on port {port}: {source}")]
    Tls {
        load_balancer: String,
        port: u16,
        #[source]
        source: Box<TlsError>,
    },
}

/// A `host:port` instance whose name does not resolve, at start or on reload.
#[derive(Debug, thiserror::Error)]
#[error("instance {instance}: cannot resolve {host}: {source}")]
pub struct UnresolvedInstance {
    pub instance: String,
    pub host: String,
    #[source]
    pub source: DiscoveryError,
}

/// Why a reload was refused (the previous configuration keeps serving). The message is what `/status` shows as
/// `last_reload_error`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The TLS error is boxed: it is large, and only this refusal carries it.
    #[error("load balancer {load_balancer}, listener on port {port}: {source}")]
    Certificate {
        load_balancer: String,
        port: u16,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{0}")]
    Resolve(#[from] UnresolvedInstance),
}

/// One bound listener of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    pub load_balancer: String,
    pub zone: String,
    pub protocol: Protocol,
    pub address: SocketAddr,
}

/// The TLS acceptor of one configured HTTPS listener (reloaded in place on SIGHUP).
struct TlsListener {
    load_balancer: String,
    /// The listener's position in its load balancer's configuration.
    index: usize,
    port: u16,
    acceptor: Arc<TlsAcceptor>,
}

/// Entries an access log may hold in memory before new ones are dropped (and counted): a slow disk never slows
/// requests.
const ACCESS_LOG_QUEUE: usize = 65_536;

/// A running elbe.
pub struct Server {
    /// Where the DNS responder listens, when configured.
    dns_address: Option<SocketAddr>,
    /// Each access-log writer, and its handle until shutdown flushes it.
    access_logs: Vec<(AccessLog, Option<WriterHandle>)>,
    acceptors: Vec<TlsListener>,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
    admin_address: SocketAddr,
    listeners: Vec<BoundListener>,
    trigger: Trigger,
    tracker: Tracker,
    tasks: Vec<JoinHandle<()>>,
    shutdown_grace: Duration,
}

/// Resolves `host:port` instances at start and on reload (their watchers re-resolve them at their TTL
/// afterwards).
async fn resolve_instances(
    config: &Config,
    discovery: &Discovery,
) -> Result<HashMap<String, Vec<IpAddr>>, UnresolvedInstance> {
    let mut resolved = HashMap::new();
    for lb in &config.load_balancers {
        for instance in &lb.instances {
            if let InstanceAddress::Host { host, .. } = &instance.address {
                let (ips, _) =
                    discovery
                        .resolve(host)
                        .await
                        .map_err(|source| UnresolvedInstance {
                            instance: instance.id.clone(),
                            host: host.clone(),
                            source,
                        })?;
                resolved.insert(instance.id.clone(), ips);
            }
        }
    }
    Ok(resolved)
}

fn bind(address: SocketAddr, what: &str, backlog: u32) -> Result<TcpListener, StartError> {
    node::bind(address, backlog).map_err(|source| StartError::Bind {
        address,
        what: what.into(),
        source,
    })
}

/// Checks what validating the file cannot: every HTTPS listener's certificates load and its policy is known
/// (`elbe check`). `start` runs the same checks.
pub fn check(config: &Config) -> Result<(), StartError> {
    for lb in &config.load_balancers {
        for listener in lb.listeners.iter().filter(|l| l.protocol.is_secure()) {
            TlsAcceptor::new(&listener.certificates, listener.ssl_policy.as_deref()).map_err(
                |source| StartError::Tls {
                    load_balancer: lb.name.clone(),
                    port: listener.load_balancer_port,
                    source: Box::new(source),
                },
            )?;
        }
    }
    Ok(())
}

/// Starts elbe for a validated configuration.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let discovery = Arc::new(Discovery::new(&config.discovery).map_err(StartError::Discovery)?);
    let resolved = resolve_instances(&config, &discovery).await?;
    let metrics = Arc::new(Metrics::new());
    let control = Arc::new(Control::new(&config, &resolved, metrics.clone(), discovery));
    if let Some(secret) = state_dir::kept_stickiness_secret(&config)? {
        control.use_stickiness_secret(secret);
    }
    control.start_health_checks();
    control.watch_names();
    let (passive_events, mut passive_failures) = tokio::sync::mpsc::unbounded_channel();
    {
        let control = Arc::downgrade(&control);
        tokio::spawn(async move {
            while let Some(failure) = passive_failures.recv().await {
                let Some(control) = control.upgrade() else {
                    return;
                };
                control.apply_passive_failure(failure);
            }
        });
    }
    let tracker = Tracker::new();
    let connections = Arc::new(Connections::new(&config.limits, tracker.clone()));
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();

    // Bind every listener first, so a bind failure leaves nothing half-started.
    let backlog = node::listen_backlog(config.limits.listen_backlog);
    let plans = control.with_listeners(|nodes| {
        nodes
            .iter()
            .map(|n| {
                (
                    n.load_balancer.to_string(),
                    n.zone.to_string(),
                    n.node,
                    n.listener.clone(),
                    n.listener_index,
                    n.routes.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    let mut bound = Vec::new();
    for (load_balancer, zone, node, listener, listener_index, routes) in plans {
        let what = format!("{load_balancer} {zone} {} listener", listener.protocol);
        let wanted = SocketAddr::new(node, listener.load_balancer_port);
        let socket = bind(wanted, &what, backlog)?;
        let address = socket.local_addr().map_err(|source| StartError::Bind {
            address: wanted,
            what: "listener".into(),
            source,
        })?;
        bound.push((
            load_balancer,
            zone,
            node,
            listener,
            listener_index,
            routes,
            socket,
            address,
        ));
    }
    let admin_socket = bind(config.admin.listen, "admin", backlog)?;
    let admin_address = admin_socket
        .local_addr()
        .map_err(|source| StartError::Bind {
            address: config.admin.listen,
            what: "admin".into(),
            source,
        })?;

    // One access-log writer per destination (two load balancers logging to one file share its writer).
    let mut access_logs: Vec<(AccessLogDestination, AccessLog, Option<WriterHandle>)> = Vec::new();
    let mut lb_logs: HashMap<String, AccessLog> = HashMap::new();
    for lb in &config.load_balancers {
        let Some(destination) = &lb.access_log else {
            continue;
        };
        let log = match access_logs.iter().find(|(d, _, _)| d == destination) {
            Some((_, log, _)) => log.clone(),
            None => {
                let target = match destination {
                    AccessLogDestination::Stdout => Destination::Stdout,
                    AccessLogDestination::File(path) => Destination::File(path.clone()),
                };
                let (log, writer) =
                    AccessLog::start(target, ACCESS_LOG_QUEUE).map_err(|source| {
                        StartError::AccessLog {
                            load_balancer: lb.name.clone(),
                            source,
                        }
                    })?;
                access_logs.push((destination.clone(), log.clone(), Some(writer)));
                log
            }
        };
        lb_logs.insert(lb.name.clone(), log);
    }

    // One TLS acceptor per configured listener, shared by its nodes (one session cache and ticket key).
    let mut acceptors: Vec<TlsListener> = Vec::new();
    for lb in &config.load_balancers {
        for (index, listener) in lb
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.protocol.is_secure())
        {
            let acceptor = TlsAcceptor::new(&listener.certificates, listener.ssl_policy.as_deref())
                .map_err(|source| StartError::Tls {
                    load_balancer: lb.name.clone(),
                    port: listener.load_balancer_port,
                    source: Box::new(source),
                })?;
            acceptors.push(TlsListener {
                load_balancer: lb.name.clone(),
                index,
                port: listener.load_balancer_port,
                acceptor: Arc::new(acceptor),
            });
        }
    }

    for (index, (load_balancer, zone, node, listener, listener_index, routes, socket, address)) in
        bound.into_iter().enumerate()
    {
        let tls = acceptors
            .iter()
            .find(|t| t.load_balancer == load_balancer && t.index == listener_index)
            .map(|t| t.acceptor.clone());
        let context = Arc::new(ListenerContext {
            routes,
            proto: if listener.protocol == Protocol::Https {
                ForwardedProto::https()
            } else {
                ForwardedProto::http()
            },
            port: HeaderValue::from(address.port()),
            node_host: HeaderValue::from_str(&node.to_string())
                .unwrap_or(HeaderValue::from_static("localhost")),
            max_uri_bytes: config.limits.max_uri_bytes,
            metrics: Arc::new(metrics.zone(&load_balancer, &zone)),
            access_log: lb_logs.get(&load_balancer).map(|log| ListenerLog {
                log: log.clone(),
                load_balancer: load_balancer.as_str().into(),
                scheme: if listener.protocol.is_secure() {
                    "https"
                } else {
                    "http"
                },
                port: address.port(),
            }),
            surge: SurgeQueue::new(
                config.limits.backend_max_requests,
                config.limits.surge_queue_size,
            ),
            passive: config
                .load_balancers
                .iter()
                .find(|lb| lb.name == load_balancer && lb.passive_health_checks)
                .map(|_| PassiveReporter {
                    load_balancer: load_balancer.as_str().into(),
                    events: passive_events.clone(),
                }),
        });
        control.with_listeners(|nodes| {
            if let Some(n) = nodes.get_mut(index) {
                n.bound = Some(address);
            }
        });
        // TCP/SSL listeners (issue 14): data_plane::tcp's accept loop; SSL instances get the checks' TLS client.
        let instance_tls = crate::control_plane::health::probe::tls::client_config().ok();
        let layer4 = (!listener.protocol.is_http())
            .then(|| Layer4::new(&config, &load_balancer, &listener, address, instance_tls));
        tracing::info!(%load_balancer, %zone, protocol = %listener.protocol, %address, "node listening");
        listeners.push(BoundListener {
            load_balancer,
            zone,
            protocol: listener.protocol,
            address,
        });
        if let Some(layer4) = layer4 {
            let (c, s) = (connections.clone(), shutdown.clone());
            tasks.push(tokio::spawn(tcp::serve_listener(
                socket, context, layer4, tls, c, s,
            )));
            continue;
        }
        tasks.push(tokio::spawn(node::serve_listener(
            socket,
            context,
            tls,
            connections.clone(),
            shutdown.clone(),
        )));
    }

    // Every load balancer's DNS name, in the log whether or not the responder runs (`/status` shows it too).
    let zone = crate::dns::Zone::of(&config);
    for (name, nodes) in &zone.names {
        tracing::info!(dns_name = %name, ?nodes, "load balancer DNS name");
    }

    // The DNS responder for load balancer names, when configured.
    let mut dns_address = None;
    if let Some(dns) = &config.dns {
        let (udp, tcp, bound) =
            crate::dns::bind(dns.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: dns.listen,
                    what: "DNS responder".into(),
                    source,
                })?;
        let zone = Arc::new(arc_swap::ArcSwap::from_pointee(zone));
        tracing::info!(address = %bound, "DNS responder listening (UDP and TCP)");
        tasks.push(tokio::spawn(crate::dns::serve_udp(
            udp,
            zone.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(crate::dns::serve_tcp(
            tcp,
            zone,
            shutdown.clone(),
        )));
        dns_address = Some(bound);
    }

    let admin = Arc::new(Admin {
        control: control.clone(),
        metrics: metrics.clone(),
        dns_address,
        access_logs: access_logs.iter().map(|(_, log, _)| log.clone()).collect(),
    });
    tracing::info!(address = %admin_address, "admin listening (/status, /healthz, /metrics)");
    tasks.push(tokio::spawn(admin::serve(
        admin_socket,
        admin,
        shutdown.clone(),
    )));

    Ok(Server {
        dns_address,
        access_logs: access_logs
            .into_iter()
            .map(|(_, log, writer)| (log, writer))
            .collect(),
        acceptors,
        control,
        metrics,
        connections,
        admin_address,
        listeners,
        trigger,
        tracker,
        tasks,
        shutdown_grace: config.limits.shutdown_grace,
    })
}

impl Server {
    /// The `/status` document: load balancers, DNS names, nodes, listeners, instance health as
    /// DescribeInstanceHealth says it.
    pub fn status(&self) -> Status {
        self.control.status(self.dns_address)
    }

    /// Whether this process can serve (what `/healthz` answers): every listener accepting and every load balancer
    /// with an InService instance its nodes may use.
    pub fn healthz(&self) -> Result<(), Unhealthy> {
        self.control.healthz()
    }

    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// The DNS responder's address (UDP and TCP), when `[dns]` is configured.
    pub fn dns_address(&self) -> Option<SocketAddr> {
        self.dns_address
    }

    /// Every bound node listener, in configuration order.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// The bound address of a load balancer's listener in a zone.
    pub fn listener(&self, load_balancer: &str, zone: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.load_balancer == load_balancer && l.zone == zone)
            .map(|l| l.address)
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Client connections open now.
    pub fn live_connections(&self) -> usize {
        self.connections.live()
    }

    /// Stops accepting, lets in-flight requests finish within the shutdown grace, then stops every task.
    /// Returns whether every connection finished in time.
    pub async fn shutdown(self) -> bool {
        self.trigger.trigger();
        self.tracker.close();
        let drained = tokio::time::timeout(self.shutdown_grace, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                live = self.tracker.len(),
                "shutdown grace ran out; closing remaining connections"
            );
        }
        for task in &self.tasks {
            task.abort();
        }
        for (_, writer) in self.access_logs {
            if let Some(writer) = writer {
                writer.flush_and_stop().await;
            }
        }
        drained
    }

    /// Reloads the configuration file (SIGHUP): certificates, instances and attributes change in place without
    /// dropping a connection. A file that does not parse or validate, or a certificate that does not load, is
    /// refused: the old configuration keeps serving and `/status` reports the error.
    pub async fn reload_from(&self, path: &std::path::Path) -> Result<(), ReloadError> {
        // Log files reopen whatever the new configuration says (logrotate sends SIGHUP after moving them).
        for (log, _) in &self.access_logs {
            log.reopen();
        }
        let result = match crate::config::load(path) {
            Ok(config) => self.reload(&config).await,
            Err(error) => Err(error.into()),
        };
        self.metrics.reloaded(result.is_ok());
        if let Err(error) = &result {
            tracing::error!(%error, "reload refused; the previous configuration keeps serving");
            self.control.reload_failed(error.to_string());
        }
        result
    }

    async fn reload(&self, config: &Config) -> Result<(), ReloadError> {
        let staged = self.stage_certificates(config)?;
        let resolved = resolve_instances(config, self.control.discovery()).await?;
        for (tls, fresh) in staged {
            tls.acceptor.replace_with(fresh);
        }
        let needs_restart = self.control.reload(config, &resolved);
        self.control.watch_names();
        for name in needs_restart {
            tracing::warn!(load_balancer = %name, "listener or zone changes (or a new load balancer) take effect at restart");
        }
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Loads every certificate of the new configuration first, all or nothing: nothing is swapped in until all
    /// of them load (and the instances resolve).
    fn stage_certificates(
        &self,
        config: &Config,
    ) -> Result<Vec<(&TlsListener, TlsAcceptor)>, ReloadError> {
        let mut staged = Vec::new();
        for tls in &self.acceptors {
            // The same listener: same position, still secure, same port (anything else needs a restart).
            let listener = config
                .load_balancers
                .iter()
                .find(|lb| lb.name == tls.load_balancer)
                .and_then(|lb| lb.listeners.get(tls.index))
                .filter(|l| l.protocol.is_secure() && l.load_balancer_port == tls.port);
            if let Some(listener) = listener {
                let fresh =
                    TlsAcceptor::new(&listener.certificates, listener.ssl_policy.as_deref())
                        .map_err(|source| ReloadError::Certificate {
                            load_balancer: tls.load_balancer.clone(),
                            port: tls.port,
                            source: Box::new(source),
                        })?;
                staged.push((tls, fresh));
            }
        }
        Ok(staged)
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> bool {
        signal.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        self.shutdown().await
    }
}
