//! `elbe::testing`, the harness for users' own tests: registration, health flips, counts, cached resolution.
use std::time::Duration;

use elbe::testing::{CachingResolver, Emulator};

const CONFIG: &str = r#"
[admin]
listen = "127.0.0.1:0"
[dns]
listen = "127.0.0.1:0"
[[load_balancer]]
name = "web"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 0
instance_protocol = "HTTP"
instance_port = 80
[load_balancer.health_check]
target = "TCP:80"
interval = "60s"
timeout = "1s"
"#;

async fn get(address: std::net::SocketAddr) -> u16 {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/")
        .header("host", "x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn register_flip_health_count_and_deregister() {
    let instance = elbe::demo::start_instance("127.0.0.1:0".parse().unwrap(), "i-1", "zone-a")
        .await
        .unwrap();
    let elb = Emulator::start(CONFIG).await.unwrap();
    assert!(elb.admin_url().starts_with("http://127.0.0.1:"));
    let name = elb.dns_name("web").unwrap();
    let mut resolver = CachingResolver::new(elb.dns_address().unwrap());
    let node = resolver.resolve(&name).await.unwrap();
    assert_eq!(node, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    let address = elb.node_address("web", node).unwrap();

    elb.register("web", "i-1", "zone-a", &instance.to_string())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while elb.server().healthz().is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first check passes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(address).await, 200);
    assert_eq!(elb.request_counts("web")["i-1"], 1);

    assert!(elb.set_in_service("web", "i-1", false));
    assert_eq!(
        get(address).await,
        503,
        "an instance flipped out of service gets no traffic"
    );
    assert!(elb.set_in_service("web", "i-1", true));
    assert_eq!(get(address).await, 200);
    assert_eq!(elb.request_counts("web")["i-1"], 2);

    assert!(elb.deregister("web", "i-1").await.unwrap());
    assert_eq!(get(address).await, 503);
    assert!(
        !elb.set_in_service("web", "i-1", true),
        "no such instance any more"
    );
    elb.stop().await;
}
