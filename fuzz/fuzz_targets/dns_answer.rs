//! The DNS responder's packet path (`dns::respond`: bytes -> hickory `Message` -> `dns::answer` -> bytes), for the
//! zone of a small configuration: two load balancers, one with IPv4 and IPv6 nodes, in the domain `elb.test`.
//!
//! Input: either raw packet bytes, or a query built from labels that are mostly the zone's own (so the fuzzer
//! reaches names inside the domain, `all.` names, the apex, case variants and labels with odd bytes).
//!
//! Invariants:
//! - a packet that is not a query (or does not parse) gets no reply; a query always gets one, which parses, is a
//!   response, and echoes the query's id, op code and question;
//! - the responder answers only inside its domain (label by label, case-insensitively): anything else is REFUSED
//!   with no answer and no AA bit; inside, AA is set;
//! - answers are only for load balancer names (`name`, or `all.name` for every node), carry the question's name,
//!   TTL 60, the record type asked (A: IPv4 nodes, AAAA: IPv6 nodes, ANY: both) and addresses of that load
//!   balancer's nodes: one for `name`, all of them for `all.name`; any other name inside is NXDOMAIN, the apex
//!   NODATA.
#![no_main]

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use elbe::fuzz_support::DnsResponder;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[dns]
listen = "127.0.0.1:0"
domain = "elb.test"

[[load_balancer]]
name = "web"
region = "local-1"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"
[[load_balancer.availability_zone]]
name = "zone-b"
node = "127.0.0.12"
[[load_balancer.availability_zone]]
name = "zone-c"
node = "::1"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000

[[load_balancer]]
name = "api"
region = "local-1"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.13"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8081
instance_protocol = "HTTP"
instance_port = 8000
"#;

struct Zone {
    responder: DnsResponder,
    domain: Name,
    /// Every label of the zone's names, for building queries.
    labels: Vec<String>,
}

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let responder = DnsResponder::from_config(CONFIG).expect("the fuzz zone's configuration is valid");
        let domain = Name::from_ascii(responder.domain()).expect("the zone's domain is a name");
        let mut labels: Vec<String> = responder
            .names()
            .iter()
            .flat_map(|name| name.split('.').map(str::to_string).collect::<Vec<_>>())
            .collect();
        labels.push("all".into());
        labels.sort();
        labels.dedup();
        Zone { responder, domain, labels }
    })
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Built(Built),
}

#[derive(Arbitrary, Debug)]
struct Built {
    id: u16,
    op_code: u8,
    response: bool,
    recursion_desired: bool,
    questions: Vec<(Vec<LabelChoice>, u16)>,
}

#[derive(Arbitrary, Debug)]
enum LabelChoice {
    /// One of the zone's labels, its letters upper-cased where the mask says.
    Known(u8, u8),
    Bytes(Vec<u8>),
}

fuzz_target!(|input: Input| {
    let zone = zone();
    let packet = match input {
        Input::Raw(bytes) => bytes,
        Input::Built(built) => match build(zone, &built) {
            Some(packet) => packet,
            None => return,
        },
    };
    let reply = zone.responder.respond(&packet);
    let query = match Message::from_vec(&packet) {
        Ok(query) if query.metadata.message_type == MessageType::Query => query,
        _ => {
            assert!(reply.is_none(), "a reply to a packet that is not a query");
            return;
        }
    };
    let reply = reply.expect("a query gets a reply");
    let reply = Message::from_vec(&reply).expect("the reply parses");
    check(zone, &query, &reply);
});

fn build(zone: &Zone, built: &Built) -> Option<Vec<u8>> {
    let mut message = Message::query();
    message.metadata.id = built.id;
    message.metadata.op_code = OpCode::from_u8(built.op_code % 16);
    message.metadata.recursion_desired = built.recursion_desired;
    if built.response {
        message.metadata.message_type = MessageType::Response;
    }
    for (labels, kind) in built.questions.iter().take(3) {
        let labels: Vec<Vec<u8>> = labels
            .iter()
            .map(|label| match label {
                LabelChoice::Known(index, mask) => {
                    let label = &zone.labels[usize::from(*index) % zone.labels.len()];
                    label
                        .bytes()
                        .enumerate()
                        .map(|(i, b)| if mask >> (i % 8) & 1 == 1 { b.to_ascii_uppercase() } else { b })
                        .collect()
                }
                LabelChoice::Bytes(bytes) => bytes.clone(),
            })
            .collect();
        let name = Name::from_labels(labels).ok()?;
        message.add_query(Query::query(name, RecordType::from(*kind)));
    }
    message.to_vec().ok()
}

fn check(zone: &Zone, query: &Message, reply: &Message) {
    assert_eq!(reply.metadata.id, query.metadata.id, "the reply echoes the id");
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.metadata.op_code, query.metadata.op_code);
    assert!(!reply.metadata.recursion_available);
    let Some(question) = query.queries.first() else {
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.answers.is_empty());
        return;
    };
    assert_eq!(reply.queries.first(), Some(question), "the reply echoes the question");
    if query.metadata.op_code != OpCode::Query || query.queries.len() != 1 {
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
        assert!(reply.answers.is_empty());
        return;
    }
    let name = question.name();
    if !zone.domain.zone_of(name) {
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused, "{name} is outside the domain");
        assert!(!reply.metadata.authoritative);
        assert!(reply.answers.is_empty(), "an answer outside the domain");
        return;
    }
    assert!(reply.metadata.authoritative, "{name} is inside the domain");
    for record in &reply.answers {
        assert_eq!(&record.name, name, "an answer for another name");
        assert!(zone.domain.zone_of(&record.name));
        assert_eq!(record.ttl, 60);
    }
    let (nodes, all) = match lookup(zone, name) {
        Some(found) => found,
        // `num_labels` leaves a leading `*` out: `*.{domain}` is a name of its own (no wildcard records here, so
        // NXDOMAIN), not the apex.
        None if !name.is_wildcard() && name.num_labels() == zone.domain.num_labels() => {
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "the apex exists");
            assert!(reply.answers.is_empty(), "the apex has no addresses");
            return;
        }
        None => {
            assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{name} is no load balancer");
            assert!(reply.answers.is_empty());
            return;
        }
    };
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let wanted: HashSet<IpAddr> = nodes
        .into_iter()
        .filter(|ip| match question.query_type() {
            RecordType::A => ip.is_ipv4(),
            RecordType::AAAA => ip.is_ipv6(),
            RecordType::ANY => true,
            _ => false,
        })
        .collect();
    let answered: Vec<IpAddr> = reply
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            other => panic!("an answer that is not an address: {other:?}"),
        })
        .collect();
    let distinct: HashSet<IpAddr> = answered.iter().copied().collect();
    assert_eq!(distinct.len(), answered.len(), "an address twice");
    assert!(distinct.is_subset(&wanted), "{answered:?} not among {wanted:?}");
    let expected = if all { wanted.len() } else { wanted.len().min(1) };
    assert_eq!(answered.len(), expected, "{name}: {answered:?} of {wanted:?}");
}

/// The nodes of the load balancer `name` is (label by label, case-insensitively), and whether it is the `all.`
/// name.
fn lookup(zone: &Zone, name: &Name) -> Option<(Vec<IpAddr>, bool)> {
    let labels: Vec<String> = name
        .iter()
        .map(|label| std::str::from_utf8(label).ok().map(str::to_ascii_lowercase))
        .collect::<Option<_>>()?;
    if labels.iter().any(|label| label.contains('.') || label.contains('\\')) {
        return None;
    }
    let joined = labels.join(".");
    if let Some(nodes) = zone.responder.nodes(&joined) {
        return Some((nodes, false));
    }
    let base = joined.strip_prefix("all.")?;
    zone.responder.nodes(base).map(|nodes| (nodes, true))
}
