//! Load balancers made, changed and deleted through the ELB API with the real AWS CLI, moving real traffic:
//! CreateLoadBalancer takes node addresses from `[api] zones`, binds, answers DNS and checks what is
//! registered; attributes, health checks, policies, listeners, zones and tags change what runs at once;
//! DeleteLoadBalancer closes its ports. And ELB's error codes for the calls that break its rules.
//!
//! Each test has its own node pools (127.77.<test>.0/29), so tests running at once never share an address.
mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::aws::{aws_with, Cli};
use common::*;

const LIMIT: Duration = Duration::from_secs(240);

/// elbe with `[api] zones` zone-a and zone-b (pools 127.77.<pool>.0/29 and 127.77.<pool+1>.0/29), the DNS
/// responder, and a catalogue: i-a in zone-a and i-b in zone-b, at `a` and `b`.
async fn elbe_for_api(pool: u8, a: &Backend, b: &Backend) -> Elbe {
    elbe_for_api_with(pool, a, b, "").await
}

/// [`elbe_for_api`] with more `[api]` keys.
async fn elbe_for_api_with(pool: u8, a: &Backend, b: &Backend, api: &str) -> Elbe {
    let mut builder = ConfigBuilder::new().dns();
    builder.top.push_str(&format!(
        "[api]\n{api}\nzones = [{{ name = \"zone-a\", node_pool = \"127.77.{pool}.0/29\" }}, \
         {{ name = \"zone-b\", node_pool = \"127.77.{}.0/29\" }}]\n\n\
         [[instance]]\nid = \"i-a\"\nzone = \"zone-a\"\naddress = \"{}\"\n\n\
         [[instance]]\nid = \"i-b\"\nzone = \"zone-b\"\naddress = \"{}\"\n\n",
        pool + 1,
        a.address,
        b.address
    ));
    builder.start().await
}

async fn aws(elbe: &Elbe, args: &[&str]) -> Cli {
    aws_with(elbe, "AKIDANY", "any-secret", args).await
}

/// Runs `aws` and expects it to succeed.
async fn ok(elbe: &Elbe, args: &[&str]) -> serde_json::Value {
    let cli = aws(elbe, args).await;
    assert!(cli.success, "aws {args:?} failed: {}", cli.stderr);
    if cli.stdout.trim().is_empty() {
        serde_json::Value::Null
    } else {
        cli.json()
    }
}

/// The A records dig gets for `name` from elbe's responder.
async fn dig(elbe: &Elbe, name: &str) -> Vec<IpAddr> {
    let server = elbe.server().dns_address().expect("[dns] is configured");
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+tries=1",
            "+time=2",
            "+short",
            name,
            "A",
        ])
        .output()
        .await
        .expect("dig is installed (./test.sh installs dnsutils)");
    let mut addresses: Vec<IpAddr> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    addresses.sort();
    addresses
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Whether something accepts connections at `address`.
async fn listening(address: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(address).await.is_ok()
}

/// Requests through `node` until `backend` has answered `n` more, or 50 tries; how many it answered.
async fn served_by(node: SocketAddr, backend: &Backend, tries: usize) -> usize {
    let before = backend.requests();
    for _ in 0..tries {
        assert_eq!(get(node, "/").await.status, 200);
    }
    backend.requests() - before
}

#[tokio::test]
async fn a_load_balancer_created_with_the_cli_moves_traffic_until_it_is_deleted() {
    bounded(LIMIT, async {
        let (a, b) = (
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Echo).await,
        );
        let elbe = elbe_for_api(10, &a, &b).await;
        let listener =
            "Protocol=HTTP,LoadBalancerPort=8080,InstanceProtocol=HTTP,InstancePort=8000";
        let create = [
            "create-load-balancer",
            "--load-balancer-name",
            "shop",
            "--listeners",
            listener,
            "--availability-zones",
            "zone-a",
            "zone-b",
            "--tags",
            "Key=team,Value=web",
        ];
        let created = ok(&elbe, &create).await;
        let dns_name = created["DNSName"].as_str().unwrap().to_owned();
        assert!(
            dns_name.starts_with("shop-") && dns_name.ends_with(".local-1.elb.localhost"),
            "{dns_name}"
        );
        // The same call again is no change; another listener set under the name is a duplicate.
        assert_eq!(ok(&elbe, &create).await["DNSName"], dns_name.as_str());
        let other = aws(
            &elbe,
            &[
                "create-load-balancer",
                "--load-balancer-name",
                "shop",
                "--listeners",
                "Protocol=TCP,LoadBalancerPort=9000,InstanceProtocol=TCP,InstancePort=8000",
                "--availability-zones",
                "zone-a",
            ],
        )
        .await;
        assert_eq!(other.error_code(), "DuplicateLoadBalancerName");

        // Its nodes took the first address of each zone's pool, and DNS answers with them (one a query, all of
        // them under `all.`, as ELB).
        let (node_a, node_b) = (at("127.77.10.1", 8080), at("127.77.11.1", 8080));
        assert_eq!(
            dig(&elbe, &format!("all.{dns_name}")).await,
            [node_a.ip(), node_b.ip()]
        );
        let one = dig(&elbe, &dns_name).await;
        assert!(one == [node_a.ip()] || one == [node_b.ip()], "{one:?}");
        let described = ok(
            &elbe,
            &["describe-load-balancers", "--load-balancer-names", "shop"],
        )
        .await;
        let lb = &described["LoadBalancerDescriptions"][0];
        assert_eq!(
            lb["AvailabilityZones"],
            serde_json::json!(["zone-a", "zone-b"])
        );
        assert_eq!(
            lb["HealthCheck"]["Target"], "TCP:8000",
            "ELB's default check"
        );
        assert_eq!(lb["HealthCheck"]["HealthyThreshold"], 10);
        assert_eq!(
            lb["ListenerDescriptions"][0]["Listener"]["LoadBalancerPort"],
            8080
        );
        assert_eq!(lb["DNSName"], dns_name.as_str());

        ok(
            &elbe,
            &[
                "register-instances-with-load-balancer",
                "--load-balancer-name",
                "shop",
                "--instances",
                "i-a",
                "i-b",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "wait",
                "instance-in-service",
                "--load-balancer-name",
                "shop",
                "--instances",
                "i-a",
                "i-b",
            ],
        )
        .await;
        let reply = get(node_a, "/through-the-new-lb").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["uri"], "/through-the-new-lb");
        assert!(
            reply.backend_header("x-forwarded-for").is_some(),
            "X-Forwarded-For reaches the instance"
        );

        // Cross-zone off: zone-a's node sends only to zone-a's instance; on: to both.
        assert_eq!(served_by(node_a, &b, 10).await, 0);
        let modified = ok(
            &elbe,
            &[
                "modify-load-balancer-attributes",
                "--load-balancer-name",
                "shop",
                "--load-balancer-attributes",
                "{\"CrossZoneLoadBalancing\":{\"Enabled\":true}}",
            ],
        )
        .await;
        assert_eq!(
            modified["LoadBalancerAttributes"]["CrossZoneLoadBalancing"]["Enabled"],
            true
        );
        assert!(
            served_by(node_a, &b, 20).await > 0,
            "cross-zone sends zone-a's requests to zone-b too"
        );

        // An HTTP health check: the instances see its requests with no client sending any.
        let check = ok(&elbe, &[
            "configure-health-check", "--load-balancer-name", "shop", "--health-check",
            "Target=HTTP:8000/health,Interval=5,Timeout=2,UnhealthyThreshold=2,HealthyThreshold=2",
        ]).await;
        assert_eq!(check["HealthCheck"]["Target"], "HTTP:8000/health");
        let before = a.requests();
        let probed = poll_until(Duration::from_secs(8), || a.requests() > before).await;
        assert!(probed, "the new check probes the instance over HTTP");

        // A stickiness policy on the listener: AWSELB cookies as ELB writes them.
        ok(
            &elbe,
            &[
                "create-lb-cookie-stickiness-policy",
                "--load-balancer-name",
                "shop",
                "--policy-name",
                "sticky",
                "--cookie-expiration-period",
                "60",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "set-load-balancer-policies-of-listener",
                "--load-balancer-name",
                "shop",
                "--load-balancer-port",
                "8080",
                "--policy-names",
                "sticky",
            ],
        )
        .await;
        let reply = get(node_a, "/sticky").await;
        let cookie = reply.headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.starts_with("AWSELB=") && cookie.ends_with(";PATH=/;MAX-AGE=60"),
            "{cookie}"
        );
        let policies = ok(
            &elbe,
            &[
                "describe-load-balancer-policies",
                "--load-balancer-name",
                "shop",
            ],
        )
        .await;
        assert_eq!(
            policies["PolicyDescriptions"][0]["PolicyTypeName"],
            "LBCookieStickinessPolicyType"
        );
        let in_use = aws(
            &elbe,
            &[
                "delete-load-balancer-policy",
                "--load-balancer-name",
                "shop",
                "--policy-name",
                "sticky",
            ],
        )
        .await;
        assert_eq!(in_use.error_code(), "InvalidConfigurationRequest");

        // Listeners come and go on the running load balancer.
        ok(
            &elbe,
            &[
                "create-load-balancer-listeners",
                "--load-balancer-name",
                "shop",
                "--listeners",
                "Protocol=HTTP,LoadBalancerPort=8081,InstanceProtocol=HTTP,InstancePort=8000",
            ],
        )
        .await;
        assert_eq!(get(at("127.77.10.1", 8081), "/second").await.status, 200);
        ok(
            &elbe,
            &[
                "delete-load-balancer-listeners",
                "--load-balancer-name",
                "shop",
                "--load-balancer-ports",
                "8081",
            ],
        )
        .await;
        assert!(
            !listening(at("127.77.10.1", 8081)).await,
            "a deleted listener's port closes"
        );
        assert!(listening(node_a).await);

        // Tags.
        ok(
            &elbe,
            &[
                "add-tags",
                "--load-balancer-names",
                "shop",
                "--tags",
                "Key=env,Value=test",
            ],
        )
        .await;
        // The CLI's shorthand for a key-only tag is the key itself, as in AWS's own example.
        ok(
            &elbe,
            &[
                "remove-tags",
                "--load-balancer-names",
                "shop",
                "--tags",
                "team",
            ],
        )
        .await;
        let tags = ok(&elbe, &["describe-tags", "--load-balancer-names", "shop"]).await;
        assert_eq!(
            tags["TagDescriptions"][0]["Tags"],
            serde_json::json!([{"Key": "env", "Value": "test"}])
        );

        // Deleted: its ports close, its name and its metric series are gone, and deleting again still succeeds.
        let metrics = admin_get(&elbe, "/metrics").await;
        assert!(String::from_utf8_lossy(&metrics.body).contains("load_balancer=\"shop\""));
        ok(
            &elbe,
            &["delete-load-balancer", "--load-balancer-name", "shop"],
        )
        .await;
        assert!(
            !listening(node_a).await && !listening(node_b).await,
            "the deleted load balancer's ports close"
        );
        let metrics = admin_get(&elbe, "/metrics").await;
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(
            !text.contains("load_balancer=\"shop\""),
            "its series go too: {text}"
        );
        assert!(dig(&elbe, &format!("all.{dns_name}")).await.is_empty());
        let gone = aws(
            &elbe,
            &["describe-load-balancers", "--load-balancer-names", "shop"],
        )
        .await;
        assert_eq!(gone.error_code(), "LoadBalancerNotFound");
        ok(
            &elbe,
            &["delete-load-balancer", "--load-balancer-name", "shop"],
        )
        .await;
        // The file's load balancer was never touched.
        assert_eq!(get(elbe.node("zone-a"), "/").await.status, 503);
        assert!(elbe.shutdown().await);
    })
    .await;
}

#[tokio::test]
async fn zones_and_the_idle_timeout_change_what_runs() {
    bounded(LIMIT, async {
        let (a, slow) = (
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Slow(Duration::from_secs(3))).await,
        );
        let elbe = elbe_for_api(20, &a, &slow).await;
        ok(
            &elbe,
            &[
                "create-load-balancer",
                "--load-balancer-name",
                "api",
                "--listeners",
                "Protocol=HTTP,LoadBalancerPort=8080,InstanceProtocol=HTTP,InstancePort=8000",
                "--availability-zones",
                "zone-a",
            ],
        )
        .await;
        let enabled = ok(
            &elbe,
            &[
                "enable-availability-zones-for-load-balancer",
                "--load-balancer-name",
                "api",
                "--availability-zones",
                "zone-b",
            ],
        )
        .await;
        assert_eq!(
            enabled["AvailabilityZones"],
            serde_json::json!(["zone-a", "zone-b"])
        );
        ok(
            &elbe,
            &[
                "register-instances-with-load-balancer",
                "--load-balancer-name",
                "api",
                "--instances",
                "i-b",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "wait",
                "instance-in-service",
                "--load-balancer-name",
                "api",
                "--instances",
                "i-b",
            ],
        )
        .await;
        let node_b = at("127.77.21.1", 8080);

        // The slow instance answers in 3 s; an idle timeout of 1 s gives ELB's 504 after about 1 s.
        ok(
            &elbe,
            &[
                "modify-load-balancer-attributes",
                "--load-balancer-name",
                "api",
                "--load-balancer-attributes",
                "{\"ConnectionSettings\":{\"IdleTimeout\":1}}",
            ],
        )
        .await;
        let started = tokio::time::Instant::now();
        let reply = get(node_b, "/slow").await;
        let took = started.elapsed();
        assert_eq!(reply.status, 504);
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
            "{took:?}"
        );
        let attributes = ok(
            &elbe,
            &[
                "describe-load-balancer-attributes",
                "--load-balancer-name",
                "api",
            ],
        )
        .await;
        assert_eq!(
            attributes["LoadBalancerAttributes"]["ConnectionSettings"]["IdleTimeout"],
            1
        );

        let disabled = ok(
            &elbe,
            &[
                "disable-availability-zones-for-load-balancer",
                "--load-balancer-name",
                "api",
                "--availability-zones",
                "zone-b",
            ],
        )
        .await;
        assert_eq!(disabled["AvailabilityZones"], serde_json::json!(["zone-a"]));
        assert!(
            !listening(node_b).await,
            "the disabled zone's node stops listening"
        );
        let last = aws(
            &elbe,
            &[
                "disable-availability-zones-for-load-balancer",
                "--load-balancer-name",
                "api",
                "--availability-zones",
                "zone-a",
            ],
        )
        .await;
        assert_eq!(last.error_code(), "InvalidConfigurationRequest");
        assert!(elbe.shutdown().await);
    })
    .await;
}

#[tokio::test]
async fn calls_that_break_elbs_rules_get_its_error_codes() {
    bounded(LIMIT, async {
        let (a, b) = (Backend::start(Behaviour::Echo).await, Backend::start(Behaviour::Echo).await);
        let elbe = elbe_for_api(30, &a, &b).await;
        let http = "Protocol=HTTP,LoadBalancerPort=8080,InstanceProtocol=HTTP,InstancePort=8000";
        let code = |cli: Cli| cli.error_code();
        let create = |listener: &'static str, zone: &'static str| {
            vec!["create-load-balancer", "--load-balancer-name", "rules", "--listeners", listener, "--availability-zones", zone]
        };
        assert_eq!(code(aws(&elbe, &create("Protocol=HTTPS,LoadBalancerPort=8443,InstanceProtocol=HTTP,InstancePort=8000,SSLCertificateId=arn:nope", "zone-a")).await), "CertificateNotFound");
        assert_eq!(code(aws(&elbe, &create("Protocol=HTTP,LoadBalancerPort=81,InstanceProtocol=HTTP,InstancePort=8000", "zone-a")).await), "ValidationError");
        assert_eq!(code(aws(&elbe, &create("Protocol=HTTP,LoadBalancerPort=8080,InstanceProtocol=TCP,InstancePort=8000", "zone-a")).await), "ValidationError");
        assert_eq!(code(aws(&elbe, &create(http, "zone-z")).await), "ValidationError");
        assert_eq!(code(aws(&elbe, &["create-load-balancer", "--load-balancer-name=-bad-", "--listeners", http, "--availability-zones", "zone-a"]).await), "ValidationError");
        ok(&elbe, &create(http, "zone-a")).await;

        let rules = ["--load-balancer-name", "rules"];
        let with = |action: &'static str, more: &[&'static str]| {
            let mut args = vec![action];
            args.extend(rules);
            args.extend(more);
            args
        };
        assert_eq!(code(aws(&elbe, &with("create-load-balancer-listeners", &["--listeners", "Protocol=TCP,LoadBalancerPort=8080,InstanceProtocol=TCP,InstancePort=8000"])).await), "DuplicateListener");
        ok(&elbe, &with("create-load-balancer-listeners", &["--listeners", http])).await;
        for check in [
            "Target=HTTP:8000/,Interval=5,Timeout=5,UnhealthyThreshold=2,HealthyThreshold=2",
            "Target=GOPHER:70,Interval=30,Timeout=5,UnhealthyThreshold=2,HealthyThreshold=2",
        ] {
            assert_eq!(code(aws(&elbe, &with("configure-health-check", &["--health-check", check])).await), "ValidationError", "{check}");
        }
        // ELB's ranges, which the CLI checks itself too: sent as raw Query calls, so elbe's own checks answer.
        for form in [
            "Action=ConfigureHealthCheck&LoadBalancerName=rules&HealthCheck.Target=TCP%3A8000&HealthCheck.Interval=4&HealthCheck.Timeout=2&HealthCheck.UnhealthyThreshold=2&HealthCheck.HealthyThreshold=2",
            "Action=ConfigureHealthCheck&LoadBalancerName=rules&HealthCheck.Target=TCP%3A8000&HealthCheck.Interval=30&HealthCheck.Timeout=5&HealthCheck.UnhealthyThreshold=2&HealthCheck.HealthyThreshold=11",
            "Action=ConfigureHealthCheck&LoadBalancerName=rules&HealthCheck.Target=TCP%3A8000&HealthCheck.Interval=301&HealthCheck.Timeout=5&HealthCheck.UnhealthyThreshold=2&HealthCheck.HealthyThreshold=2",
            "Action=ModifyLoadBalancerAttributes&LoadBalancerName=rules&LoadBalancerAttributes.ConnectionSettings.IdleTimeout=3601",
            "Action=ModifyLoadBalancerAttributes&LoadBalancerName=rules&LoadBalancerAttributes.ConnectionDraining.Enabled=true&LoadBalancerAttributes.ConnectionDraining.Timeout=0",
            "Action=CreateLoadBalancerListeners&LoadBalancerName=rules&Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort=8082&Listeners.member.1.InstancePort=0",
        ] {
            let reply = admin_send(&elbe, http::Method::POST, "/", &format!("{form}&Version=2012-06-01")).await;
            assert_eq!(reply.status, 400, "{form}");
            assert!(String::from_utf8_lossy(&reply.body).contains("<Code>ValidationError</Code>"), "{form}");
        }
        assert_eq!(code(aws(&elbe, &with("set-load-balancer-policies-of-listener", &["--load-balancer-port", "9999", "--policy-names", "[]"])).await), "ListenerNotFound");
        assert_eq!(code(aws(&elbe, &with("set-load-balancer-policies-of-listener", &["--load-balancer-port", "8080", "--policy-names", "nope"])).await), "PolicyNotFound");
        ok(&elbe, &with("create-app-cookie-stickiness-policy", &["--policy-name", "app", "--cookie-name", "JSESSIONID"])).await;
        ok(&elbe, &with("create-app-cookie-stickiness-policy", &["--policy-name", "app", "--cookie-name", "JSESSIONID"])).await;
        assert_eq!(code(aws(&elbe, &with("create-app-cookie-stickiness-policy", &["--policy-name", "app", "--cookie-name", "OTHER"])).await), "DuplicatePolicyName");
        assert_eq!(code(aws(&elbe, &with("create-load-balancer-policy", &["--policy-name", "x", "--policy-type-name", "NoSuchPolicyType"])).await), "PolicyTypeNotFound");
        ok(&elbe, &with("create-load-balancer-policy", &["--policy-name", "pp", "--policy-type-name", "ProxyProtocolPolicyType", "--policy-attributes", "AttributeName=ProxyProtocol,AttributeValue=true"])).await;
        assert_eq!(code(aws(&elbe, &with("set-load-balancer-policies-of-listener", &["--load-balancer-port", "8080", "--policy-names", "pp"])).await), "InvalidConfigurationRequest");
        assert_eq!(code(aws(&elbe, &with("set-load-balancer-policies-for-backend-server", &["--instance-port", "8000", "--policy-names", "app"])).await), "InvalidConfigurationRequest");
        ok(&elbe, &with("set-load-balancer-policies-for-backend-server", &["--instance-port", "8000", "--policy-names", "pp"])).await;
        let described = ok(&elbe, &["describe-load-balancers", "--load-balancer-names", "rules"]).await;
        assert_eq!(described["LoadBalancerDescriptions"][0]["BackendServerDescriptions"], serde_json::json!([{"InstancePort": 8000, "PolicyNames": ["pp"]}]));
        assert_eq!(code(aws(&elbe, &["add-tags", "--load-balancer-names", "rules", "--tags", "Key=k,Value=1", "Key=k,Value=2"]).await), "DuplicateTagKeys");
        let eleven: Vec<String> = (0..11).map(|n| format!("Key=k{n},Value=v")).collect();
        let mut add = vec!["add-tags", "--load-balancer-names", "rules", "--tags"];
        add.extend(eleven.iter().map(String::as_str));
        assert_eq!(code(aws(&elbe, &add).await), "TooManyTags");
        assert_eq!(code(aws(&elbe, &["configure-health-check", "--load-balancer-name", "nope", "--health-check", "Target=TCP:80,Interval=30,Timeout=5,UnhealthyThreshold=2,HealthyThreshold=2"]).await), "LoadBalancerNotFound");
        // A port some other program holds: refused whole (409), nothing kept.
        let holder = std::net::TcpListener::bind("127.77.30.1:9090").unwrap();
        assert_eq!(code(aws(&elbe, &with("create-load-balancer-listeners", &["--listeners", "Protocol=TCP,LoadBalancerPort=9090,InstanceProtocol=TCP,InstancePort=8000"])).await), "InvalidConfigurationRequest");
        drop(holder);
        let described = ok(&elbe, &["describe-load-balancers", "--load-balancer-names", "rules"]).await;
        assert_eq!(described["LoadBalancerDescriptions"][0]["ListenerDescriptions"].as_array().unwrap().len(), 1);
        assert!(elbe.shutdown().await);
    })
    .await;
}

#[tokio::test]
async fn https_listeners_name_api_certificates_and_a_deleted_load_balancer_drains_its_requests() {
    bounded(LIMIT, async {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let (slow, b) = (
            // Longer than the harness's 5 s shutdown_grace: the drain waits for ConnectionDraining's 10 s.
            Backend::start(Behaviour::Slow(Duration::from_millis(6000))).await,
            Backend::start(Behaviour::Echo).await,
        );
        let api = format!(
            "certificates = [{{ id = \"arn:aws:iam::000000000000:server-certificate/dev\", \
             cert = \"{certs}/localhost.crt\", key = \"{certs}/localhost.key\" }}]"
        );
        let elbe = elbe_for_api_with(50, &slow, &b, &api).await;
        ok(&elbe, &["create-load-balancer", "--load-balancer-name", "secure", "--listeners",
            "Protocol=HTTPS,LoadBalancerPort=8443,InstanceProtocol=HTTP,InstancePort=8000,SSLCertificateId=arn:aws:iam::000000000000:server-certificate/dev",
            "--availability-zones", "zone-a"]).await;
        let described = ok(&elbe, &["describe-load-balancers", "--load-balancer-names", "secure"]).await;
        let listener = &described["LoadBalancerDescriptions"][0]["ListenerDescriptions"][0]["Listener"];
        assert_eq!(listener["SSLCertificateId"], "arn:aws:iam::000000000000:server-certificate/dev");
        ok(&elbe, &["register-instances-with-load-balancer", "--load-balancer-name", "secure", "--instances", "i-a"]).await;
        ok(&elbe, &["wait", "instance-in-service", "--load-balancer-name", "secure", "--instances", "i-a"]).await;

        // curl trusts only the development CA: the certificate the id names is the one served.
        let curl = |path: &'static str| {
            tokio::process::Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
                .args(["--cacert", &format!("{certs}/dev-ca.crt")])
                .args(["--resolve", "localhost:8443:127.77.50.1"])
                .arg(format!("https://localhost:8443{path}"))
                .output()
        };
        // Deletion drains as a reload's removal does, by the load balancer's own ConnectionDraining.
        ok(&elbe, &["modify-load-balancer-attributes", "--load-balancer-name", "secure", "--load-balancer-attributes",
            "{\"ConnectionDraining\":{\"Enabled\":true,\"Timeout\":10}}"]).await;
        let before = slow.requests();
        let in_flight = tokio::spawn(curl("/in-flight"));
        assert!(poll_until(Duration::from_secs(10), || slow.requests() > before).await, "the request reached the instance");
        // Deleted while the request is at the instance: the listener stops accepting, the request finishes.
        ok(&elbe, &["delete-load-balancer", "--load-balancer-name", "secure"]).await;
        assert!(!listening(at("127.77.50.1", 8443)).await, "no new connections once deleted");
        let finished = in_flight.await.unwrap().expect("curl runs (./test.sh installs it)");
        assert_eq!(String::from_utf8_lossy(&finished.stdout), "200", "{}", String::from_utf8_lossy(&finished.stderr));
        assert!(elbe.shutdown().await);
    })
    .await;
}

#[tokio::test]
async fn a_reload_keeps_what_the_api_made_and_tcp_listeners_send_proxy_protocol() {
    bounded(LIMIT, async {
        let (a, b) = (
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Echo).await,
        );
        // i-pp speaks raw TCP: it records the first line each connection sends.
        let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw_address = raw.local_addr().unwrap();
        let (lines, mut first_lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            while let Ok((stream, _)) = raw.accept().await {
                let lines = lines.clone();
                tokio::spawn(async move {
                    let mut stream = tokio::io::BufReader::new(stream);
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.is_ok() && !line.is_empty() {
                        let _ = lines.send(line);
                        let _ = stream.get_mut().write_all(b"pong\n").await;
                    }
                });
            }
        });
        let mut builder = ConfigBuilder::new().dns();
        builder.top.push_str(&format!(
            "[api]\nzones = [{{ name = \"zone-a\", node_pool = \"127.77.60.0/29\" }}]\n\n\
             [[instance]]\nid = \"i-pp\"\nzone = \"zone-a\"\naddress = \"{raw_address}\"\n\n\
             [[instance]]\nid = \"i-a\"\nzone = \"zone-a\"\naddress = \"{}\"\n\n",
            a.address
        ));
        let _ = &b;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elbe.toml");
        std::fs::write(&path, builder.toml()).unwrap();
        let elbe = Elbe {
            server: Some(
                elbe::server::start(elbe::config::load(&path).unwrap())
                    .await
                    .unwrap(),
            ),
        };
        ok(
            &elbe,
            &[
                "create-load-balancer",
                "--load-balancer-name",
                "tcp",
                "--listeners",
                "Protocol=TCP,LoadBalancerPort=7000,InstanceProtocol=TCP,InstancePort=7000",
                "--availability-zones",
                "zone-a",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "create-load-balancer-policy",
                "--load-balancer-name",
                "tcp",
                "--policy-name",
                "pp",
                "--policy-type-name",
                "ProxyProtocolPolicyType",
                "--policy-attributes",
                "AttributeName=ProxyProtocol,AttributeValue=true",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "set-load-balancer-policies-for-backend-server",
                "--load-balancer-name",
                "tcp",
                "--instance-port",
                "7000",
                "--policy-names",
                "pp",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "register-instances-with-load-balancer",
                "--load-balancer-name",
                "tcp",
                "--instances",
                "i-pp",
            ],
        )
        .await;
        ok(
            &elbe,
            &[
                "wait",
                "instance-in-service",
                "--load-balancer-name",
                "tcp",
                "--instances",
                "i-pp",
            ],
        )
        .await;

        // Two identical creations at once: both answered, one load balancer.
        let twice = [
            "create-load-balancer",
            "--load-balancer-name",
            "twin",
            "--listeners",
            "Protocol=HTTP,LoadBalancerPort=7100,InstanceProtocol=HTTP,InstancePort=8000",
            "--availability-zones",
            "zone-a",
        ];
        let (first, second) = tokio::join!(aws(&elbe, &twice), aws(&elbe, &twice));
        assert!(
            first.success && second.success,
            "{} {}",
            first.stderr,
            second.stderr
        );
        assert_eq!(first.json()["DNSName"], second.json()["DNSName"]);

        // An attribute set through the API wins over the file; one the API never set follows the file.
        ok(
            &elbe,
            &[
                "modify-load-balancer-attributes",
                "--load-balancer-name",
                "web",
                "--load-balancer-attributes",
                "{\"CrossZoneLoadBalancing\":{\"Enabled\":true}}",
            ],
        )
        .await;
        let mut edited = builder.clone();
        edited
            .lb_extra
            .push_str("idle_timeout = \"30s\"\ncross_zone_load_balancing = false\n");
        std::fs::write(&path, edited.toml()).unwrap();
        elbe.server().reload_from(&path).await.unwrap();
        let attributes = ok(
            &elbe,
            &[
                "describe-load-balancer-attributes",
                "--load-balancer-name",
                "web",
            ],
        )
        .await;
        let attributes = &attributes["LoadBalancerAttributes"];
        assert_eq!(
            attributes["ConnectionSettings"]["IdleTimeout"], 30,
            "the file's new idle timeout"
        );
        assert_eq!(
            attributes["CrossZoneLoadBalancing"]["Enabled"], true,
            "the API's cross-zone"
        );

        // A refused reload's error stays on /status through later API changes.
        std::fs::write(&path, "not = [toml").unwrap();
        assert!(elbe.server().reload_from(&path).await.is_err());
        ok(
            &elbe,
            &[
                "add-tags",
                "--load-balancer-names",
                "tcp",
                "--tags",
                "Key=k,Value=v",
            ],
        )
        .await;
        let status = admin_get(&elbe, "/status").await.json();
        assert!(
            status["config"]["last_reload_error"].is_string(),
            "{}",
            status["config"]
        );
        std::fs::write(&path, edited.toml()).unwrap();

        // The same file again: what the API made stays, bound and serving.
        elbe.server().reload_from(&path).await.unwrap();
        let node = at("127.77.60.1", 7000);
        let mut client = tokio::net::TcpStream::connect(node).await.unwrap();
        let local = client.local_addr().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"ping\n")
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), first_lines.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            line,
            format!(
                "PROXY TCP4 {} 127.77.60.1 {} 7000\r\n",
                local.ip(),
                local.port()
            ),
            "ProxyProtocolPolicyType on the instance port"
        );
        let described = ok(
            &elbe,
            &[
                "describe-load-balancer-policies",
                "--load-balancer-name",
                "tcp",
                "--policy-names",
                "pp",
            ],
        )
        .await;
        assert_eq!(
            described["PolicyDescriptions"][0]["PolicyAttributeDescriptions"],
            serde_json::json!([{"AttributeName": "ProxyProtocol", "AttributeValue": "true"}])
        );
        let types = ok(&elbe, &["describe-load-balancer-policy-types"]).await;
        assert_eq!(types["PolicyTypeDescriptions"].as_array().unwrap().len(), 3);
        drop(client);
        assert!(elbe.shutdown().await);
    })
    .await;
}
