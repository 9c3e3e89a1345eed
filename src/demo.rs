//! The demonstration `cargo run --release` starts: two zones, a node on its own loopback address in each, two
//! in-process instances per zone that answer with who they are and the X-Forwarded-* headers they received.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The two zones and their node addresses.
pub const ZONES: [(&str, &str); 2] = [("zone-a", "127.0.0.11"), ("zone-b", "127.0.0.12")];
/// The demo's listener port on each node.
pub const PORT: u16 = 8080;
/// The demo's HTTPS listener port on each node (development certificates from `certs/`).
pub const TLS_PORT: u16 = 8443;
/// The development certificates (for development and tests only), where `cargo run` finds them.
const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
/// The `SSLCertificateId` the demo's `[api] certificates` gives the development certificate.
const DEV_CERTIFICATE: &str = "arn:aws:iam::000000000000:server-certificate/dev";

/// Starts one demo instance on `address` (port 0 for any) and returns the bound address.
pub async fn start_instance(
    address: SocketAddr,
    instance_id: &'static str,
    zone: &'static str,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    Ok::<_, Infallible>(describe(instance_id, zone, &request))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn describe(instance_id: &str, zone: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let body = format!(
        "instance: {instance_id}\nzone: {zone}\nrequest: {} {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\nx-forwarded-port: {}\n",
        request.method(),
        request.uri(),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("x-forwarded-port"),
    );
    Response::new(Full::new(Bytes::from(body)))
}

/// The demo's configuration, with the instances' bound addresses filled in.
pub fn config_text(instances: &[(&str, &str, SocketAddr)]) -> String {
    let mut text = format!(
        r#"[admin]
listen = "127.0.0.1:9900"

# The ELB API: load balancers created with `aws elb create-load-balancer` take node addresses from these pools.
[api]
region = "local-1"
zones = [{{ name = "zone-a", node_pool = "127.0.1.0/24" }}, {{ name = "zone-b", node_pool = "127.0.2.0/24" }}]
certificates = [{{ id = "{DEV_CERTIFICATE}", cert = "{CERTS}/localhost.crt", key = "{CERTS}/localhost.key" }}]

[[load_balancer]]
name = "demo"
region = "local-1"
cross_zone_load_balancing = false
idle_timeout = "60s"
"#
    );
    for (zone, node) in ZONES {
        text.push_str(&format!(
            "\n[[load_balancer.availability_zone]]\nname = \"{zone}\"\nnode = \"{node}\"\n"
        ));
    }
    // ELB's HTTP check (the demo instances answer 200 on every path), faster than ELB's 30 s so changes show.
    text.push_str(
        "\n[load_balancer.health_check]\ntarget = \"HTTP:80/health\"\ninterval = \"5s\"\ntimeout = \"2s\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n",
    );
    text.push_str(&format!(
        "\n[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = {PORT}\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n"
    ));
    text.push_str(&format!(
        "\n[[load_balancer.listener]]\nprotocol = \"HTTPS\"\nload_balancer_port = {TLS_PORT}\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n\
         certificates = [{{ cert = \"{CERTS}/localhost.crt\", key = \"{CERTS}/localhost.key\" }}, {{ cert = \"{CERTS}/example.crt\", key = \"{CERTS}/example.key\" }}]\n"
    ));
    for (id, zone, address) in instances {
        text.push_str(&format!(
            "\n[[load_balancer.instance]]\nid = \"{id}\"\nzone = \"{zone}\"\naddress = \"{address}\"\n"
        ));
    }
    // The same instances in the API's catalogue, so `aws elb register-instances-with-load-balancer` names them.
    for (id, zone, address) in instances {
        text.push_str(&format!(
            "\n[[instance]]\nid = \"{id}\"\nzone = \"{zone}\"\naddress = \"{address}\"\n"
        ));
    }
    text
}

/// Starts the demo instances and returns the configuration text that points at them.
pub async fn start_instances() -> std::io::Result<String> {
    let plan: [(&'static str, &'static str, &str); 4] = [
        ("i-a1", "zone-a", "127.0.0.21:0"),
        ("i-a2", "zone-a", "127.0.0.22:0"),
        ("i-b1", "zone-b", "127.0.0.23:0"),
        ("i-b2", "zone-b", "127.0.0.24:0"),
    ];
    let mut instances = Vec::new();
    for (id, zone, address) in plan {
        let address: SocketAddr = address.parse().map_err(std::io::Error::other)?;
        instances.push((id, zone, start_instance(address, id, zone).await?));
    }
    Ok(config_text(&instances))
}

/// Waits (at most 3 s) until the instances have passed their first health check, so the first curl succeeds.
pub async fn wait_until_in_service(server: &crate::server::Server) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let status = server.control().status(None);
        if status
            .load_balancers
            .iter()
            .flat_map(|lb| &lb.instances)
            .all(|i| i.state == "InService")
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What the demo prints once it is up.
pub fn banner() -> String {
    let (_, a) = ZONES[0];
    let (_, b) = ZONES[1];
    format!(
        "elbe demo is up: load balancer \"demo\", two zones, two instances each, cross-zone load balancing off.\n\
         \n  curl http://{a}:{PORT}/          # node in zone-a: answered by i-a1 or i-a2\n  \
         curl http://{b}:{PORT}/          # node in zone-b: answered by i-b1 or i-b2\n  \
         curl -H 'X-Forwarded-For: 203.0.113.7' http://{a}:{PORT}/   # elbe appends the address it saw\n  \
         curl --http2-prior-knowledge http://{a}:{PORT}/              # HTTP/2 (h2c); instances still get HTTP/1.1\n  \
         curl --cacert {CERTS}/dev-ca.crt --resolve localhost:{TLS_PORT}:{a} https://localhost:{TLS_PORT}/   # HTTPS (h2 by ALPN)\n  \
         http://127.0.0.1:9900/                 # the status page, in a browser\n  \
         curl http://127.0.0.1:9900/status      # DescribeInstanceHealth, as JSON\n  \
         curl http://127.0.0.1:9900/metrics     # ELB's CloudWatch metrics\n\n\
         The ELB API with the AWS CLI (pip install awscli; the demo checks no signature, any keys do):\n  \
         elb() {{ AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo aws elb \"$@\" --endpoint-url http://127.0.0.1:9900/ --region local-1; }}\n  \
         elb create-load-balancer --load-balancer-name shop --availability-zones zone-a \\\n      \
         --listeners Protocol=HTTP,LoadBalancerPort=8080,InstanceProtocol=HTTP,InstancePort=80\n  \
         elb register-instances-with-load-balancer --load-balancer-name shop --instances i-a1\n  \
         elb wait instance-in-service --load-balancer-name shop --instances i-a1\n  \
         curl http://127.0.1.1:8080/          # through the new load balancer's node in zone-a\n\nCtrl-C stops it.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_configuration_is_valid() {
        let address: SocketAddr = "127.0.0.21:4000".parse().unwrap();
        let text = config_text(&[("i-a1", "zone-a", address)]);
        let config = crate::config::parse(&text, std::path::Path::new("<demo>"))
            .expect("demo config parses");
        let lb = &config.load_balancers[0];
        assert_eq!(lb.availability_zones.len(), 2);
        assert_eq!(lb.listeners[0].load_balancer_port, PORT);
        assert_eq!(lb.listeners[1].load_balancer_port, TLS_PORT);
        for certificate in &lb.listeners[1].certificates {
            assert!(certificate.cert.exists(), "{}", certificate.cert.display());
        }
        assert_eq!(lb.health_check.target.to_string(), "HTTP:80/health");
        assert_eq!(
            config.api.zones.len(),
            2,
            "the API can create load balancers in both zones"
        );
        assert_eq!(
            config.instances[0].id, "i-a1",
            "the catalogue names the demo's instances"
        );
        assert!(config.api.certificates[0].paths.cert.exists());
    }
}
