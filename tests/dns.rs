//! The DNS responder with real clients: dig over UDP and TCP (ELB-SPEC §4).
mod common;

use std::collections::HashSet;

use common::*;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

async fn dns_elbe() -> (Elbe, String, std::net::SocketAddr) {
    let elbe = ConfigBuilder::new()
        .dns()
        .zones(&[("zone-a", "127.0.0.11"), ("zone-b", "127.0.0.12")])
        .start()
        .await;
    let status = elbe.server().status();
    let name = status.load_balancers[0].dns_name.clone();
    let address = elbe
        .server()
        .dns_address()
        .expect("the responder is configured");
    (elbe, name, address)
}

/// Runs dig against the responder and returns its output.
async fn dig(server: std::net::SocketAddr, args: &[&str]) -> String {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+tries=1", "+time=2"])
        .args(args)
        .output()
        .await
        .expect("dig is installed (./test.sh installs dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The answer section's records as (ttl, address).
fn answers(output: &str) -> Vec<(u32, String)> {
    output
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts[1].parse().unwrap(), parts[4].to_string())
        })
        .collect()
}

#[tokio::test]
async fn one_node_per_answer_ttl_60_and_both_nodes_over_many_queries() {
    let (_elbe, name, server) = dns_elbe().await;
    assert!(
        name.starts_with("web-") && name.ends_with(".local-1.elb.localhost"),
        "{name}"
    );
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let out = dig(server, &[&name, "A"]).await;
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(
            out.contains("flags: qr aa"),
            "authoritative, no recursion: {out}"
        );
        let records = answers(&out);
        assert_eq!(records.len(), 1, "{out}");
        assert_eq!(records[0].0, 60);
        seen.insert(records[0].1.clone());
    }
    assert_eq!(
        seen,
        HashSet::from(["127.0.0.11".to_string(), "127.0.0.12".to_string()])
    );
}

#[tokio::test]
async fn all_prefix_nxdomain_refused_and_tcp() {
    let (_elbe, name, server) = dns_elbe().await;
    let all = answers(&dig(server, &[&format!("all.{name}"), "A"]).await);
    let mut nodes: Vec<String> = all.into_iter().map(|(_, a)| a).collect();
    nodes.sort();
    assert_eq!(nodes, ["127.0.0.11", "127.0.0.12"]);
    let unknown = dig(server, &["nothing-1.local-1.elb.localhost", "A"]).await;
    assert!(unknown.contains("status: NXDOMAIN"), "{unknown}");
    let foreign = dig(server, &["example.com", "A"]).await;
    assert!(foreign.contains("status: REFUSED"), "{foreign}");
    let tcp = dig(server, &["+tcp", &name, "A"]).await;
    assert_eq!(answers(&tcp).len(), 1, "{tcp}");
}

#[tokio::test]
async fn status_reports_the_dns_address_and_name() {
    let (elbe, name, server) = dns_elbe().await;
    let reply = admin_get(&elbe, "/status").await;
    let json = reply.json();
    assert_eq!(json["dns"]["address"], server.to_string());
    assert_eq!(json["load_balancers"][0]["dns_name"], name);
}

#[tokio::test]
async fn hickory_resolver_reads_the_responder() {
    // Not under .localhost: resolvers (hickory included, RFC 6761) answer those names themselves.
    let mut builder =
        ConfigBuilder::new().zones(&[("zone-a", "127.0.0.11"), ("zone-b", "127.0.0.12")]);
    builder
        .top
        .push_str("[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"elb.test\"\n\n");
    let elbe = builder.start().await;
    let server = elbe.server().dns_address().unwrap();
    let name = elbe.server().status().load_balancers[0].dns_name.clone();
    assert!(name.ends_with(".elb.test"), "{name}");
    // hickory-resolver, pointed at the responder as a client's resolv.conf would point at a name server.
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let servers = vec![NameServerConfig::new(server.ip(), true, vec![udp])];
    let resolver = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .build()
    .unwrap();
    let lookup = resolver.lookup_ip(name.as_str()).await.unwrap();
    let ips: Vec<std::net::IpAddr> = lookup.iter().collect();
    assert_eq!(ips.len(), 1, "one node per answer: {ips:?}");
    assert!(ips[0].to_string() == "127.0.0.11" || ips[0].to_string() == "127.0.0.12");
    // hickory states an answer's lifetime as a std Instant.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::Instant::now();
    let ttl = lookup.valid_until().saturating_duration_since(now);
    assert!(ttl <= std::time::Duration::from_secs(60));
    let all = resolver.lookup_ip(format!("all.{name}")).await.unwrap();
    assert_eq!(all.iter().count(), 2);
    assert!(resolver
        .lookup_ip("nothing-1.local-1.elb.test")
        .await
        .is_err());
}
