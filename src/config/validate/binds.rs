//! The last check: no two sockets elbe would open may bind the same address and port.
//!
//! Rule: every zone's node binds every listener with a nonzero port on the node's address; the admin listener and
//! the DNS responder's TCP socket bind theirs. A collision would make start-up (or a reload) fail half-way, so
//! the file is refused now, naming both sockets.
//!
//! Trade-off: overlap is judged as Linux binds: an unspecified address (`0.0.0.0`, `::`) overlaps every address
//! of its family, and `::` overlaps IPv4 too (dual-stack by default). A host with `bindv6only` set could bind
//! both, and is refused anyway; port 0 never collides, since the kernel picks a free port.

use std::net::{IpAddr, SocketAddr};

use crate::config::error::ConfigError;
use crate::config::model::Config;
use crate::config::validate::context::Cx;

impl Cx<'_> {
    /// Two sockets on the same (address, port) cannot both bind, so refuse the file now rather than fail at
    /// start-up. The first socket in file order keeps its address; the later one is blamed.
    pub(super) fn check_binds(&self, config: &Config) -> Result<(), ConfigError> {
        let binds = binds(config);
        for (n, bind) in binds.iter().enumerate().filter(|(_, b)| b.addr.port() != 0) {
            let earlier = binds[..n].iter().find(|other| {
                other.addr.port() == bind.addr.port() && overlaps(other.addr.ip(), bind.addr.ip())
            });
            if let Some(other) = earlier {
                return Err(self.err(
                    bind.key.clone(),
                    format!(
                        "{} would bind {}, which {} already binds at {}; give each node its own address or port",
                        bind.what, bind.addr, other.what, other.addr
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A socket elbe would bind, with the key to blame and the words that name it in an error.
struct Bind {
    addr: SocketAddr,
    key: String,
    what: String,
}

/// Every socket the configuration binds: the admin listener, the DNS responder, then each zone's node's
/// listeners, in file order.
fn binds(config: &Config) -> Vec<Bind> {
    let mut binds = vec![Bind {
        addr: config.admin.listen,
        key: "admin.listen".into(),
        what: "the admin listener".into(),
    }];
    if let Some(dns) = &config.dns {
        binds.push(Bind {
            addr: dns.listen,
            key: "dns.listen".into(),
            what: "the DNS responder".into(),
        });
    }
    for (i, lb) in config.load_balancers.iter().enumerate() {
        for (z, zone) in lb.availability_zones.iter().enumerate() {
            for (l, listener) in lb.listeners.iter().enumerate() {
                binds.push(Bind {
                    addr: SocketAddr::new(zone.node, listener.load_balancer_port),
                    key: format!("load_balancer[{i}].availability_zone[{z}].node"),
                    what: format!(
                        "load_balancer[{i}] {:?} zone {:?} listener[{l}]",
                        lb.name, zone.name
                    ),
                });
            }
        }
    }
    binds
}

/// Whether sockets on `a` and `b` (same port) collide: an unspecified address (`0.0.0.0`, `::`) overlaps every
/// address of its family, and `::` also covers IPv4, as Linux binds it dual-stack by default.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b
        || (a.is_unspecified() && (a.is_ipv6() || b.is_ipv4()))
        || (b.is_unspecified() && (b.is_ipv6() || a.is_ipv4()))
}
