//! Zone stickiness, reproduced: ELB's DNS name answers one node per query (TTL 60 s), each node prefers its own
//! zone, so one client that resolves once sends everything to one zone, while many clients resolving afresh split
//! about evenly. Cross-zone load balancing makes both cases split evenly.
//!
//!     cargo run --example zone_stickiness
use std::net::SocketAddr;

use bytes::Bytes;
use elbe::testing::{CachingResolver, Emulator};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

/// Requests that reached each zone's instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    pub zone_a: u64,
    pub zone_b: u64,
}

impl Split {
    pub(crate) fn share_a(&self) -> f64 {
        self.zone_a as f64 / (self.zone_a + self.zone_b).max(1) as f64
    }
}

fn config(cross_zone: bool, a: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[dns]
listen = "127.0.0.1:0"
[[load_balancer]]
name = "story"
cross_zone_load_balancing = {cross_zone}
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"
[[load_balancer.availability_zone]]
name = "zone-b"
node = "127.0.0.12"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 0
instance_protocol = "HTTP"
instance_port = 80
[load_balancer.health_check]
target = "TCP:80"
interval = "100ms"
timeout = "50ms"
[[load_balancer.instance]]
id = "web1"
zone = "zone-a"
address = "{a}"
[[load_balancer.instance]]
id = "web2"
zone = "zone-b"
address = "{b}"
"#
    )
}

async fn get(address: SocketAddr) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get("/")
        .header("host", "story")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    Ok(())
}

/// Runs `clients` clients of `requests` requests each; `resolve_once` clients cache DNS (one resolver for all
/// their requests), otherwise every client resolves afresh.
pub(crate) async fn run(
    cross_zone: bool,
    clients: usize,
    requests: usize,
) -> anyhow::Result<Split> {
    let a = elbe::demo::start_instance("127.0.0.21:0".parse()?, "web1", "zone-a").await?;
    let b = elbe::demo::start_instance("127.0.0.22:0".parse()?, "web2", "zone-b").await?;
    let elb = Emulator::start(&config(cross_zone, a, b)).await?;
    elbe::demo::wait_until_in_service(elb.server()).await;
    anyhow::ensure!(
        elb.server().healthz().is_ok(),
        "instances never came InService"
    );
    let name = elb
        .dns_name("story")
        .expect("the load balancer has a DNS name");
    let dns = elb.dns_address().expect("[dns] is configured");
    for _ in 0..clients {
        let mut resolver = CachingResolver::new(dns); // one client, with its own DNS cache
        for _ in 0..requests {
            let node = resolver.resolve(&name).await?;
            get(elb
                .node_address("story", node)
                .expect("DNS answers node addresses"))
            .await?;
        }
    }
    let counts = elb.request_counts("story");
    let split = Split {
        zone_a: counts.get("web1").copied().unwrap_or(0),
        zone_b: counts.get("web2").copied().unwrap_or(0),
    };
    elb.stop().await;
    Ok(split)
}

#[allow(dead_code)] // the example's entry point; tests include this file for `run`
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let show = |split: Split| {
        format!(
            "web1 (zone-a) {:>4}   web2 (zone-b) {:>4}   ({:.0}% / {:.0}%)",
            split.zone_a,
            split.zone_b,
            split.share_a() * 100.0,
            (1.0 - split.share_a()) * 100.0
        )
    };
    println!("cross-zone load balancing off:");
    println!(
        "  (a) one client resolves once, 10 requests:      {}",
        show(run(false, 1, 10).await?)
    );
    println!(
        "  (b) 1,000 clients, each resolving afresh:       {}",
        show(run(false, 1000, 1).await?)
    );
    println!("cross-zone load balancing on:");
    println!(
        "  (c) one client resolves once, 100 requests:     {}",
        show(run(true, 1, 100).await?)
    );
    println!(
        "      1,000 clients, each resolving afresh:       {}",
        show(run(true, 1000, 1).await?)
    );
    Ok(())
}
