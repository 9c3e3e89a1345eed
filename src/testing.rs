//! A harness for people's own tests: an emulated ELB in-process, and a client that resolves its DNS name the way
//! real clients do (once per TTL).
//!
//! Add elbe as a dev-dependency, start an [`Emulator`] from the same TOML `elbe run` reads (port 0 everywhere:
//! read the bound addresses back), register your instances, resolve the load balancer's DNS name with a
//! [`CachingResolver`] (one resolver = one client with a 60 s DNS cache, ELB-SPEC.md §4) and send real requests
//! to the node it answered. [`Emulator::set_in_service`] flips an instance's health without waiting for its
//! checks; [`Emulator::request_counts`] says where requests went. `examples/zone_stickiness.rs` reproduces zone
//! stickiness (ELB-SPEC.md §3) with this module: copy it into your project (`cargo run --example
//! zone_stickiness` runs it here, and `tests/zone_stickiness.rs` asserts its three outcomes).
//!
//! ```
//! use elbe::testing::{CachingResolver, Emulator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = r#"
//! [admin]
//! listen = "127.0.0.1:0"
//! [dns]
//! listen = "127.0.0.1:0"
//! [[load_balancer]]
//! name = "web"
//! [[load_balancer.availability_zone]]
//! name = "zone-a"
//! node = "127.0.0.1"
//! [[load_balancer.listener]]
//! protocol = "HTTP"
//! load_balancer_port = 0
//! instance_protocol = "HTTP"
//! instance_port = 80
//! "#;
//! // An instance that answers who it is (any HTTP server of yours will do).
//! let instance = elbe::demo::start_instance("127.0.0.1:0".parse()?, "i-a", "zone-a").await?;
//! let elb = Emulator::start(config).await?;
//! elb.register("web", "i-a", "zone-a", &instance.to_string()).await?;
//! assert!(elb.set_in_service("web", "i-a", true)); // no need to wait for its first health check
//!
//! let mut resolver = CachingResolver::new(elb.dns_address().ok_or("no [dns]")?);
//! let node = resolver.resolve(&elb.dns_name("web").ok_or("no such load balancer")?).await?;
//! let address = elb.node_address("web", node).ok_or("no listener on that node")?; // connect here
//! assert_eq!(address.ip(), node);
//! assert_eq!(elb.request_counts("web").get("i-a").copied().unwrap_or(0), 0); // no request sent yet
//! elb.stop().await;
//! # Ok(()) }
//! ```
//! Non-Rust users get the same through the binary and the admin API (`/status`, instance registration).
#![deny(missing_docs)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::config::{self, InstanceAddress};
use crate::control_plane::control::InstanceHealth;
use crate::server::{self, Server};

/// Why the harness could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The configuration text is not valid (the error names the key and the reason).
    #[error(transparent)]
    Config(#[from] Box<config::ConfigError>),
    /// elbe did not start (a listener could not bind, a certificate did not load...).
    #[error(transparent)]
    Start(#[from] Box<server::StartError>),
    /// The instance address is not an IP, `ip:port` or `host:port`.
    #[error("instance address {address:?}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The load balancer does not exist, or a `host:port` address did not resolve.
    #[error(transparent)]
    Registration(#[from] ControlError),
    /// The DNS query could not be made or its answer not read.
    #[error("DNS query for {name}: {source}")]
    Dns {
        /// The name asked for.
        name: String,
        /// What failed: the socket, the timeout (2 s) or the answer's format.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The responder answered without an A record.
    #[error("no A record for {name}: {response_code}")]
    NoAnswer {
        /// The name asked for.
        name: String,
        /// The responder's code (`NXDomain` for a name it does not serve).
        response_code: String,
    },
}

/// Why the control plane refused a registration: no such load balancer, or a `host:port` that did not resolve.
pub use crate::control_plane::control::ControlError;

/// An emulated ELB running in this process: the real elbe (nodes, health checks, DNS responder, admin listener),
/// started from a configuration text and stopped with [`Emulator::stop`]. See the [module](self) for an example.
pub struct Emulator {
    server: Server,
}

impl Emulator {
    /// Starts elbe from a configuration text (the same TOML as `elbe run`; ports 0 are fine). Instances in the
    /// configuration are checked at once; the call returns when every listener is bound, before any verdict.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let error = elbe::testing::Emulator::start("[[load_balancer]]\nname = 7\n").await.err();
    /// assert!(matches!(error, Some(elbe::testing::HarnessError::Config(_))));
    /// # }
    /// ```
    pub async fn start(config_text: &str) -> Result<Self, HarnessError> {
        let config =
            config::parse(config_text, std::path::Path::new("<test>")).map_err(Box::new)?;
        Ok(Emulator {
            server: server::start(config).await.map_err(Box::new)?,
        })
    }

    /// The running server, for everything else ([`Server::status`] is `/status`; reload, metrics, listeners).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The load balancer's DNS name (`name-<hash>.<region>.<domain>`, ELB-SPEC.md §4), or `None` without
    /// such a load balancer.
    pub fn dns_name(&self, load_balancer: &str) -> Option<String> {
        let status = self.server.control().status(self.server.dns_address());
        status
            .load_balancers
            .into_iter()
            .find(|lb| lb.name == load_balancer)
            .map(|lb| lb.dns_name)
    }

    /// The DNS responder's address, when `[dns]` is configured.
    pub fn dns_address(&self) -> Option<SocketAddr> {
        self.server.dns_address()
    }

    /// The admin listener's base URL (`http://127.0.0.1:<port>`): the status page at `/`, `/status`, `/metrics`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.server.admin_address())
    }

    /// The first listener's address on the node whose IP DNS answered (what a client connects to).
    pub fn node_address(&self, load_balancer: &str, node: IpAddr) -> Option<SocketAddr> {
        self.server
            .listeners()
            .iter()
            .find(|l| l.load_balancer == load_balancer && l.address.ip() == node)
            .map(|l| l.address)
    }

    /// Registers an instance (it starts OutOfService until its first passing health check, as in ELB). The
    /// address is `ip`, `ip:port` or `host:port` (resolved now, then followed at its TTL).
    pub async fn register(
        &self,
        load_balancer: &str,
        id: &str,
        zone: &str,
        address: &str,
    ) -> Result<(), HarnessError> {
        let address: InstanceAddress =
            address
                .parse()
                .map_err(|reason: String| HarnessError::Address {
                    address: address.to_owned(),
                    reason,
                })?;
        let instance = config::Instance {
            id: id.to_owned(),
            zone: zone.to_owned(),
            address,
        };
        self.server
            .control()
            .register(load_balancer, instance)
            .await
            .map_err(HarnessError::from)
    }

    /// Deregisters an instance; returns whether it was registered.
    pub async fn deregister(&self, load_balancer: &str, id: &str) -> Result<bool, HarnessError> {
        self.server
            .control()
            .deregister(load_balancer, id)
            .await
            .map_err(HarnessError::from)
    }

    /// Flips an instance's health at once (until its health checks see a change of their own): `true` makes it
    /// InService, `false` OutOfService as after failed checks. Returns whether the instance is registered.
    ///
    /// ```no_run
    /// # async fn flip(elb: &elbe::testing::Emulator) {
    /// assert!(elb.set_in_service("web", "i-a", false)); // the nodes stop sending it requests now
    /// assert!(!elb.set_in_service("web", "no-such-instance", true));
    /// # }
    /// ```
    pub fn set_in_service(&self, load_balancer: &str, id: &str, in_service: bool) -> bool {
        let health = if in_service {
            InstanceHealth::IN_SERVICE
        } else {
            InstanceHealth::FAILED_UNHEALTHY_THRESHOLD
        };
        self.server
            .control()
            .force_health(load_balancer, id, health)
    }

    /// Requests dispatched to each instance so far, by instance id (an instance that got none counts 0 or is absent).
    ///
    /// ```no_run
    /// # async fn count(elb: &elbe::testing::Emulator) {
    /// let counts = elb.request_counts("web");
    /// let zone_a: u64 = ["i-a1", "i-a2"].iter().filter_map(|id| counts.get(*id)).sum();
    /// # }
    /// ```
    pub fn request_counts(&self, load_balancer: &str) -> HashMap<String, u64> {
        self.server.control().request_counts(load_balancer)
    }

    /// Stops gracefully: stops accepting, lets requests in flight finish (within `shutdown_grace`), then returns.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// A client's view of DNS: asks the responder, keeps the answer for its TTL, as a browser or a JVM with a 60 s
/// cache does. One cached resolver = one client; a fresh resolver per request = many distributed clients.
///
/// ```no_run
/// # async fn clients(elb: &elbe::testing::Emulator) -> Result<(), elbe::testing::HarnessError> {
/// use elbe::testing::CachingResolver;
/// let (dns, name) = (elb.dns_address().unwrap(), elb.dns_name("web").unwrap());
/// let mut one_client = CachingResolver::new(dns);
/// let first = one_client.resolve(&name).await?;
/// assert_eq!(one_client.resolve(&name).await?, first, "cached for the TTL: the same node");
/// let another_client = CachingResolver::new(dns).resolve(&name).await?; // maybe the other zone's node
/// # Ok(()) }
/// ```
pub struct CachingResolver {
    server: SocketAddr,
    cache: HashMap<String, (IpAddr, Instant)>,
}

impl CachingResolver {
    /// A resolver with an empty cache that asks the DNS responder at `server` ([`Emulator::dns_address`]).
    pub fn new(server: SocketAddr) -> Self {
        CachingResolver {
            server,
            cache: HashMap::new(),
        }
    }

    /// The address for `name`: the cached one while its TTL lasts, else a new query (A record).
    pub async fn resolve(&mut self, name: &str) -> Result<IpAddr, HarnessError> {
        if let Some((ip, until)) = self.cache.get(name) {
            if Instant::now() < *until {
                return Ok(*ip);
            }
        }
        let (ip, ttl) = self.query(name).await?;
        self.cache.insert(
            name.to_owned(),
            (ip, Instant::now() + Duration::from_secs(u64::from(ttl))),
        );
        Ok(ip)
    }

    async fn query(&self, name: &str) -> Result<(IpAddr, u32), HarnessError> {
        let dns = |source: Box<dyn std::error::Error + Send + Sync>| HarnessError::Dns {
            name: name.to_owned(),
            source,
        };
        let mut message = Message::query();
        message.metadata.id = rand_id();
        message.add_query(Query::query(
            Name::from_ascii(name).map_err(|e| dns(e.into()))?,
            RecordType::A,
        ));
        let bytes = message.to_vec().map_err(|e| dns(e.into()))?;
        let bind: SocketAddr = if self.server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|e: std::net::AddrParseError| dns(e.into()))?;
        let socket = UdpSocket::bind(bind).await.map_err(|e| dns(e.into()))?;
        socket
            .send_to(&bytes, self.server)
            .await
            .map_err(|e| dns(e.into()))?;
        let mut buffer = vec![0u8; 4096];
        let len = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
            .await
            .map_err(|e| dns(e.into()))?
            .map_err(|e| dns(e.into()))?;
        let reply = Message::from_vec(&buffer[..len]).map_err(|e| dns(e.into()))?;
        reply
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::A(a) => Some((IpAddr::V4(a.0), record.ttl)),
                _ => None,
            })
            .ok_or_else(|| HarnessError::NoAnswer {
                name: name.to_owned(),
                response_code: format!("{:?}", reply.metadata.response_code),
            })
    }
}

fn rand_id() -> u16 {
    crate::data_plane::routing::balancer::random_below(usize::from(u16::MAX)) as u16
}
