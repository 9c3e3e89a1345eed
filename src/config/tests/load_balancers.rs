//! A load balancer's own rules: its name and region (ELB-SPEC §4), its availability zones, its instances.

use std::net::{IpAddr, Ipv6Addr};

use super::{fails, ok, with_lb, MINIMAL};
use crate::config::{Instance, InstanceAddress};

#[test]
fn load_balancer_rules() {
    fails(
        &MINIMAL.replace("\"web\"", "\"-web\""),
        "load_balancer[0].name",
        "begin or end",
    );
    fails(
        &MINIMAL.replace("\"web\"", "\"web_1\""),
        "load_balancer[0].name",
        "letters, digits",
    );
    fails(
        &MINIMAL.replace("\"web\"", &format!("\"{}\"", "a".repeat(33))),
        "load_balancer[0].name",
        "1 to 32",
    );
    fails(
        &MINIMAL.replace("\"web\"", "\"\""),
        "load_balancer[0].name",
        "1 to 32",
    );
    ok(&MINIMAL.replace("\"web\"", &format!("\"{}\"", "a".repeat(32))));
    let second = MINIMAL
        .replace("127.0.0.11", "127.0.0.12")
        .replace("\"web\"", "\"WEB\"");
    fails(
        &format!("{MINIMAL}{second}"),
        "load_balancer[1].name",
        "already used by load_balancer[0]",
    );
    fails(
        &with_lb("region = \"us east\""),
        "load_balancer[0].region",
        "DNS label",
    );
    fails(
        &MINIMAL.replace(
            "[[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.11\"\n",
            "",
        ),
        "load_balancer[0].availability_zone",
        "at least one",
    );
    fails(
        MINIMAL
            .split("[[load_balancer.listener]]")
            .next()
            .unwrap_or_default(),
        "load_balancer[0].listener",
        "at least one",
    );
    fails(
        &format!("[dns]\nlisten = \"127.0.0.1:5353\"\ndomain = \"elb..local\"\n{MINIMAL}"),
        "dns.domain",
        "not a DNS name",
    );
    fails(
        &format!("[dns]\nlisten = \"localhost:53\"\n{MINIMAL}"),
        "dns.listen",
        "IP address and port",
    );
    fails(
        &format!("[admin]\nlisten = \"9900\"\n{MINIMAL}"),
        "admin.listen",
        "IP address and port",
    );
}

#[test]
fn zone_rules() {
    let zone = |name: &str, node: &str| {
        format!("[[load_balancer.availability_zone]]\nname = \"{name}\"\nnode = \"{node}\"\n")
    };
    let z1 = "load_balancer[0].availability_zone[1]";
    fails(
        &format!("{MINIMAL}{}", zone("zone-a", "127.0.0.12")),
        &format!("{z1}.name"),
        "already listed",
    );
    fails(
        &format!("{MINIMAL}{}", zone("", "127.0.0.12")),
        &format!("{z1}.name"),
        "empty",
    );
    fails(
        &format!("{MINIMAL}{}", zone("zone-b", "localhost")),
        &format!("{z1}.node"),
        "not an IP address",
    );
    fails(
        &format!("{MINIMAL}{}", zone("zone-b", "127.0.0.11")),
        &format!("{z1}.node"),
        "127.0.0.11:8080",
    );
    let config = ok(&format!("{MINIMAL}{}", zone("zone-b", "::1")));
    assert_eq!(
        config.load_balancers[0].availability_zones[1].node,
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    );
}

#[test]
fn instance_rules() {
    let inst = |id: &str, zone: &str, address: &str| {
        format!("[[load_balancer.instance]]\nid = \"{id}\"\nzone = \"{zone}\"\naddress = \"{address}\"\n")
    };
    let i1 = "load_balancer[0].instance[1]";
    let first = inst("i-1", "zone-a", "127.0.0.21");
    fails(
        &format!("{MINIMAL}{first}{}", inst("i-1", "zone-a", "127.0.0.22")),
        &format!("{i1}.id"),
        "already used by instance[0]",
    );
    fails(
        &format!("{MINIMAL}{first}{}", inst("", "zone-a", "127.0.0.22")),
        &format!("{i1}.id"),
        "empty",
    );
    fails(
        &format!("{MINIMAL}{first}{}", inst("i-2", "", "127.0.0.22")),
        &format!("{i1}.zone"),
        "empty",
    );
    fails(
        &format!("{MINIMAL}{first}{}", inst("i-2", "zone-a", "backend")),
        &format!("{i1}.address"),
        "needs a port",
    );
    // A zone that is not enabled is accepted (reported OutOfService at run time).
    let config = ok(&format!(
        "{MINIMAL}{first}{}",
        inst("i-2", "zone-z", "backend.local:8000")
    ));
    assert_eq!(
        config.load_balancers[0].instances[1],
        Instance {
            id: "i-2".into(),
            zone: "zone-z".into(),
            address: InstanceAddress::Host {
                host: "backend.local".into(),
                port: 8000
            }
        }
    );
}
