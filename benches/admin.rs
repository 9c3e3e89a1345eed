//! The admin listener's answers with 1,000 registered instances (issue 18 item 5: `/metrics` and `/status` each
//! under 50 ms): the `/status` JSON as the admin handler renders it, the `/metrics` text (pool gauges refreshed,
//! then encoded), and both end to end as one GET over a real loopback connection. Instances: 600 on a TCP listener
//! that accepts (InService), 400 on a closed port (OutOfService), over three zones, checked every second.
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INSTANCES: usize = 1000;
const IN_SERVICE: usize = 600;

/// A configuration with the instances; zones on 127.0.0.1..3, every port 0.
fn config(up: SocketAddr, closed: SocketAddr) -> String {
    let mut text = String::from(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[load_balancer]]\nname = \"web\"\n\n\
         [load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\n\n\
         [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n\n",
    );
    let zones = ["zone-a", "zone-b", "zone-c"];
    for (n, zone) in zones.iter().enumerate() {
        text.push_str(&format!(
            "[[load_balancer.availability_zone]]\nname = \"{zone}\"\nnode = \"127.0.0.{}\"\n\n",
            n + 1
        ));
    }
    for n in 0..INSTANCES {
        let address = if n < IN_SERVICE { up } else { closed };
        text.push_str(&format!(
            "[[load_balancer.instance]]\nid = \"i-{n:08x}\"\nzone = \"{}\"\naddress = \"{address}\"\n\n",
            zones[n % 3]
        ));
    }
    text
}

/// One GET with `Connection: close`, read to the end; the bytes read.
async fn get(admin: SocketAddr, path: &str) -> usize {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = Vec::with_capacity(1 << 20);
    stream.read_to_end(&mut body).await.unwrap();
    assert!(body.starts_with(b"HTTP/1.1 200"), "{path}");
    body.len()
}

fn admin(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, _instances) = runtime.block_on(async {
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = up.accept().await {
                drop(stream);
            }
        });
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let text = config(up_addr, closed);
        let config = elbe::config::parse(&text, std::path::Path::new("bench.toml")).unwrap();
        let server = elbe::server::start(config).await.unwrap();
        // Every instance has its verdict.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = server.status();
            let settled = status.load_balancers[0]
                .instances
                .iter()
                .filter(|i| i.state == "InService" || i.description.contains("UnhealthyThreshold"))
                .count();
            if settled == INSTANCES || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (server, accepting)
    });
    let admin = server.admin_address();
    let mut group = c.benchmark_group("admin, 1,000 instances");
    group.sample_size(30);
    group.bench_function("/status JSON render", |b| {
        b.iter(|| black_box(serde_json::to_string_pretty(&server.status()).unwrap()))
    });
    group.bench_function("/metrics text render", |b| {
        b.iter(|| {
            server.control().refresh_pool_gauges();
            black_box(server.metrics().encode())
        })
    });
    group.bench_function("GET /status over HTTP", |b| {
        b.iter(|| runtime.block_on(get(admin, "/status")))
    });
    group.bench_function("GET /metrics over HTTP", |b| {
        b.iter(|| runtime.block_on(get(admin, "/metrics")))
    });
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, admin);
criterion_main!(benches);
