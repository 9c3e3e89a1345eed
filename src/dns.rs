//! The authoritative DNS responder for load balancer names (ELB-SPEC.md §4).
//!
//! A load balancer is a DNS name, `<name>-<digits>.<region>.<domain>`, with a 60-second TTL, whose answer holds one
//! node address chosen at random per query (ELB's behaviour for small load balancers: this is what makes one client
//! that resolves once stick to one zone); `all.<name>` answers every node. A records come from IPv4 nodes, AAAA from
//! IPv6 nodes. The responder is authoritative (AA) for its domain and never recurses: unknown names inside the
//! domain get NXDOMAIN, names outside it REFUSED. UDP and TCP (RFC 1035 §4.2.2 length prefix) on the same address.
//!
//! Messages are parsed and written with hickory-proto; the answers are elbe's own (no zone files).
//!
//! In cluster mode (DESIGN.md "The state store", issue 16 item 3) a name answers only the nodes some live member
//! of the cluster serves: [`SharedZone::serve_only`] lays that set on the configured zone. Both inputs and the
//! answers they make are one value swapped whole, so a query reads one snapshot and a reload racing a membership
//! change never publishes answers made from half of each.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::data_plane::routing::balancer::random_below;
use crate::shutdown::Shutdown;

/// ELB's TTL on load balancer names.
pub(crate) const TTL: u32 = 60;

/// What the responder answers: load balancer names (lower case, no trailing dot) to their node addresses.
#[derive(Debug, Default, Clone)]
pub(crate) struct Zone {
    /// The domain the responder is authoritative for (lower case, no trailing dot).
    pub domain: String,
    pub names: HashMap<String, Vec<IpAddr>>,
    /// The load balancer each name is (name to load balancer name), for [`SharedZone::serve_only`].
    pub load_balancers: HashMap<String, String>,
}

impl Zone {
    /// The names of every load balancer in `config` and their nodes' addresses (the domain defaults to
    /// `elb.localhost`, as `/status` says).
    pub(crate) fn of(config: &crate::config::Config) -> Zone {
        let domain = config
            .dns
            .as_ref()
            .map_or("elb.localhost", |d| d.domain.as_str())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut zone = Zone {
            domain,
            ..Zone::default()
        };
        for lb in &config.load_balancers {
            let name = dns_name(&lb.name, &lb.region, &zone.domain).to_ascii_lowercase();
            let nodes = lb.availability_zones.iter().map(|z| z.node).collect();
            zone.names.insert(name.clone(), nodes);
            zone.load_balancers.insert(name, lb.name.clone());
        }
        zone
    }

    /// This zone with only the nodes in `live`: a name keeps the nodes its load balancer has there, and one left
    /// with none answers no address (NODATA, as a load balancer whose nodes are all gone).
    fn only(&self, live: &LiveNodes) -> Zone {
        let names = self
            .names
            .iter()
            .map(|(name, nodes)| {
                let lb = self.load_balancers.get(name).map_or("", String::as_str);
                let kept = nodes
                    .iter()
                    .filter(|ip| live.contains(&(lb.to_owned(), **ip)))
                    .copied()
                    .collect();
                (name.clone(), kept)
            })
            .collect();
        Zone {
            domain: self.domain.clone(),
            names,
            load_balancers: self.load_balancers.clone(),
        }
    }
}

/// The nodes some live member of the cluster serves: (load balancer name, node address).
pub(crate) type LiveNodes = HashSet<(String, IpAddr)>;

/// The published zone: what the configuration names, the live nodes in cluster mode, and the answers both make,
/// swapped whole whenever either changes and read once per query. Cloning shares it.
#[derive(Clone)]
pub(crate) struct SharedZone(Arc<ArcSwap<Published>>);

/// One published state of the zone.
pub(crate) struct Published {
    /// The zone as the configuration has it.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))] // read by `serve_only`
    configured: Arc<Zone>,
    /// In cluster mode, the nodes live members serve; `None`: every configured node.
    live: Option<Arc<LiveNodes>>,
    /// What queries are answered from.
    answers: Zone,
}

impl Published {
    fn new(configured: Arc<Zone>, live: Option<Arc<LiveNodes>>) -> Published {
        let answers = match &live {
            Some(live) => configured.only(live),
            None => (*configured).clone(),
        };
        Published {
            configured,
            live,
            answers,
        }
    }
}

impl std::ops::Deref for Published {
    type Target = Zone;

    fn deref(&self) -> &Zone {
        &self.answers
    }
}

impl SharedZone {
    /// Publishes `zone` with every configured node answered.
    pub(crate) fn new(zone: Zone) -> SharedZone {
        SharedZone(Arc::new(ArcSwap::from_pointee(Published::new(
            Arc::new(zone),
            None,
        ))))
    }

    /// What queries are answered from now.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Published>> {
        self.0.load()
    }

    /// Publishes a new configured zone (a reload), keeping the live nodes.
    pub(crate) fn store(&self, configured: Arc<Zone>) {
        self.0
            .rcu(|now| Published::new(configured.clone(), now.live.clone()));
    }

    /// Answers only the nodes in `live` from now on (cluster mode), or every configured node with `None`.
    /// Returns whether the answers changed.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster's view task calls it
    pub(crate) fn serve_only(&self, live: Option<LiveNodes>) -> bool {
        let live = live.map(Arc::new);
        let before = self.0.load_full();
        if before.live == live {
            return false;
        }
        self.0
            .rcu(|now| Published::new(now.configured.clone(), live.clone()));
        true
    }
}

/// Answers one query message (the pure part: tested without sockets).
pub(crate) fn answer(zone: &Zone, query: &Message) -> Message {
    let mut response = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = false;
    let Some(question) = query.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(question.clone());
    if query.metadata.op_code != OpCode::Query || query.queries.len() != 1 {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    // Inside the domain label by label: as text, a label holding a dot (`x\.elb`) would end with the domain.
    let inside = Name::from_ascii(&zone.domain).is_ok_and(|domain| domain.zone_of(question.name()));
    if !inside {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    response.metadata.authoritative = true;
    let Some(name) = plain_name(question.name()) else {
        response.metadata.response_code = ResponseCode::NXDomain;
        return response;
    };
    let (nodes, all) = match zone.names.get(&name) {
        Some(nodes) => (nodes, false),
        None => match name
            .strip_prefix("all.")
            .and_then(|base| zone.names.get(base))
        {
            Some(nodes) => (nodes, true),
            None if name == zone.domain => {
                return response; // the apex exists; it has no address records (NODATA)
            }
            None => {
                response.metadata.response_code = ResponseCode::NXDomain;
                return response;
            }
        },
    };
    let wanted: Vec<&IpAddr> = nodes
        .iter()
        .filter(|ip| match question.query_type() {
            RecordType::A => ip.is_ipv4(),
            RecordType::AAAA => ip.is_ipv6(),
            RecordType::ANY => true,
            _ => false,
        })
        .collect();
    let chosen: Vec<&IpAddr> = if all || wanted.is_empty() {
        wanted
    } else {
        vec![wanted[random_below(wanted.len())]]
    };
    for ip in chosen {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        response.add_answer(Record::from_rdata(question.name().clone(), TTL, rdata));
    }
    response
}

/// A name as lower-case text without the trailing dot, or `None` when a label holds a dot or a byte that is not
/// printable ASCII: no load balancer has such a name, and its text would not show where its labels are.
fn plain_name(name: &Name) -> Option<String> {
    let mut text = String::new();
    for label in name.iter() {
        if label.is_empty() || !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Some(text)
}

pub(crate) fn respond(zone: &SharedZone, packet: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    answer(&zone.load().answers, &query).to_vec().ok()
}

/// Serves UDP queries until shutdown.
pub(crate) async fn serve_udp(socket: UdpSocket, zone: SharedZone, mut shutdown: Shutdown) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "DNS receive failed");
                    continue;
                }
            },
            _ = shutdown.triggered() => return,
        };
        if let Some(reply) = respond(&zone, &buffer[..len]) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// Serves TCP queries (two-byte length prefix, several per connection) until shutdown.
pub(crate) async fn serve_tcp(listener: TcpListener, zone: SharedZone, mut shutdown: Shutdown) {
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = shutdown.triggered() => return,
        };
        let zone = zone.clone();
        tokio::spawn(async move {
            let idle = std::time::Duration::from_secs(10);
            loop {
                let Ok(Ok(len)) = tokio::time::timeout(idle, stream.read_u16()).await else {
                    return;
                };
                let mut packet = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut packet).await.is_err() {
                    return;
                }
                let Some(reply) = respond(&zone, &packet) else {
                    return;
                };
                let Ok(reply_len) = u16::try_from(reply.len()) else {
                    return;
                };
                if stream.write_u16(reply_len).await.is_err()
                    || stream.write_all(&reply).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Binds UDP and TCP on `address` (port 0: any free port, the same for both) and returns the bound address.
pub(crate) async fn bind(
    address: SocketAddr,
) -> std::io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    // Port 0: take a free UDP port, then the same TCP port (retry a few times if TCP's is taken).
    for _ in 0..16 {
        let udp = UdpSocket::bind(address).await?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(error) if address.port() != 0 => return Err(error),
            Err(_) => continue,
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    ))
}

/// The load balancer's DNS name: `<name>-<10 digits>.<region>.<domain>`, the digits derived from name and region
/// (FNV-1a) so the name is stable across restarts (ELB-SPEC.md §4).
pub(crate) fn dns_name(name: &str, region: &str, domain: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes().chain([b'.']).chain(region.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let digits = 1_000_000_000 + hash % 9_000_000_000;
    format!("{name}-{digits}.{region}.{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_name_is_stable_and_well_formed() {
        let a = dns_name("web", "local-1", "elb.localhost");
        assert_eq!(a, dns_name("web", "local-1", "elb.localhost"));
        let digits = a.strip_prefix("web-").unwrap().split('.').next().unwrap();
        assert_eq!(digits.len(), 10);
        assert!(a.ends_with(".local-1.elb.localhost"));
        assert_ne!(a, dns_name("web2", "local-1", "elb.localhost"));
    }
    use hickory_proto::op::Query;

    fn zone() -> Zone {
        Zone {
            domain: "elb.localhost".into(),
            names: HashMap::from([(
                "web-1234567890.local-1.elb.localhost".to_string(),
                vec![
                    "127.0.0.11".parse().unwrap(),
                    "127.0.0.12".parse().unwrap(),
                    "::1".parse().unwrap(),
                ],
            )]),
            ..Zone::default()
        }
    }

    fn ask(name: &str, kind: RecordType) -> Message {
        ask_in(&zone(), name, kind)
    }

    fn ask_in(zone: &Zone, name: &str, kind: RecordType) -> Message {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        answer(zone, &query)
    }

    /// The addresses `all.web` answers from what `shared` publishes now.
    fn all_nodes(shared: &SharedZone) -> Vec<String> {
        let reply = ask_in(
            &shared.load(),
            "all.web-1234567890.local-1.elb.localhost",
            RecordType::ANY,
        );
        let mut nodes: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        nodes.sort();
        nodes
    }

    /// Cluster mode: only live members' nodes are answered, a reload (a new configured zone) keeps that filter,
    /// and lifting it answers every configured node again.
    #[test]
    fn only_live_nodes_are_answered_and_a_reload_keeps_the_filter() {
        let mut configured = zone();
        configured
            .load_balancers
            .insert("web-1234567890.local-1.elb.localhost".into(), "web".into());
        let shared = SharedZone::new(configured.clone());
        assert_eq!(all_nodes(&shared), ["127.0.0.11", "127.0.0.12", "::1"]);
        let live: LiveNodes = [
            ("web".to_owned(), "127.0.0.12".parse().unwrap()),
            ("other".to_owned(), "127.0.0.11".parse().unwrap()),
        ]
        .into();
        assert!(shared.serve_only(Some(live.clone())));
        assert!(
            !shared.serve_only(Some(live)),
            "the same set changes nothing"
        );
        assert_eq!(
            all_nodes(&shared),
            ["127.0.0.12"],
            "another load balancer's node at .11 does not count"
        );
        shared.store(Arc::new(configured));
        assert_eq!(
            all_nodes(&shared),
            ["127.0.0.12"],
            "a reload keeps the filter"
        );
        shared.serve_only(Some(LiveNodes::new()));
        let none = ask_in(
            &shared.load(),
            "web-1234567890.local-1.elb.localhost",
            RecordType::A,
        );
        assert_eq!(none.metadata.response_code, ResponseCode::NoError);
        assert!(none.answers.is_empty(), "no live node: no address");
        shared.serve_only(None);
        assert_eq!(all_nodes(&shared), ["127.0.0.11", "127.0.0.12", "::1"]);
    }

    #[test]
    fn one_random_a_record_with_ttl_60() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let reply = ask("web-1234567890.local-1.elb.localhost.", RecordType::A);
            assert_eq!(reply.metadata.id, 7);
            assert!(reply.metadata.authoritative);
            assert!(!reply.metadata.recursion_available);
            assert_eq!(reply.answers.len(), 1);
            assert_eq!(reply.answers[0].ttl, TTL);
            seen.insert(reply.answers[0].data.clone());
        }
        assert_eq!(seen.len(), 2, "both IPv4 nodes appear over many queries");
    }

    #[test]
    fn all_prefix_answers_every_node_and_aaaa_only_ipv6() {
        assert_eq!(
            ask("all.web-1234567890.local-1.elb.localhost", RecordType::A)
                .answers
                .len(),
            2
        );
        let v6 = ask("WEB-1234567890.local-1.elb.localhost", RecordType::AAAA);
        assert_eq!(v6.answers.len(), 1);
        assert!(matches!(v6.answers[0].data, RData::AAAA(_)));
    }

    fn ask_labels(labels: &[&[u8]], kind: RecordType) -> Message {
        let mut query = Message::query();
        query.add_query(Query::query(
            Name::from_labels(labels.iter().copied()).unwrap(),
            kind,
        ));
        answer(&zone(), &query)
    }

    /// A label may hold any byte, a dot included (RFC 1035 §3.1); as text it is escaped (`x\\.elb`), and the
    /// text ends with `.elb.localhost` although the name is not inside `elb.localhost`.
    #[test]
    fn a_dot_inside_a_label_does_not_put_a_name_inside_the_domain() {
        let outside = ask_labels(&[b"x.elb", b"localhost"], RecordType::A);
        assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
        assert!(!outside.metadata.authoritative);
        let outside = ask_labels(
            &[b"web-1234567890.local-1.elb", b"localhost"],
            RecordType::A,
        );
        assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
        assert!(outside.answers.is_empty());
        let inside = ask_labels(&[b"x.y", b"elb", b"localhost"], RecordType::A);
        assert_eq!(inside.metadata.response_code, ResponseCode::NXDomain);
        assert!(inside.metadata.authoritative);
    }

    /// A literal `*` label is a name of its own: no wildcard records here, so NXDOMAIN, and not the apex's NODATA
    /// although it has as many labels as the apex once the `*` is left out (the fuzz target's seed
    /// `seed-found-wildcard-label-at-apex-length`).
    #[test]
    fn a_star_label_over_the_domain_is_no_name_of_ours() {
        let star = ask_labels(&[b"*", b"elb", b"localhost"], RecordType::A);
        assert_eq!(star.metadata.response_code, ResponseCode::NXDomain);
        assert!(star.metadata.authoritative && star.answers.is_empty());
        let apex = ask_labels(&[b"elb", b"localhost"], RecordType::A);
        assert_eq!(apex.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn unknown_names_are_nxdomain_and_foreign_names_refused() {
        let unknown = ask("nope-1.local-1.elb.localhost", RecordType::A);
        assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
        assert!(unknown.metadata.authoritative);
        let foreign = ask("example.com", RecordType::A);
        assert_eq!(foreign.metadata.response_code, ResponseCode::Refused);
        assert!(foreign.answers.is_empty());
        let nodata = ask("web-1234567890.local-1.elb.localhost", RecordType::MX);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
    }
}
