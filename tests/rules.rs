//! Listener rules over real sockets (ALB's model, DESIGN.md "Listener rules"): matched by the client's source
//! address (clients bound to distinct 127.0.0.x addresses), host, path and method; each action (forward, redirect,
//! fixed response); priorities; and elbe's own answers counted and logged.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, instance, Backend, Behaviour, ConfigBuilder, Elbe, Reply};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The seed's restricted export: `/export/*` only from 127.0.0.2 (and an IPv6 block), else 403.
const EXPORT_RULES: &str = r#"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 20
path_pattern = ["/export/*"]
action = { type = "fixed_response", status_code = 403, content_type = "text/plain", message_body = "export controlled" }

[[load_balancer.rule]]
load_balancer_port = 0
priority = 10
path_pattern = ["/export/*"]
source_ip = ["127.0.0.2/32", "2001:db8::/32"]
action = { type = "forward" }
"#;

async fn elbe_with(lines: &str) -> (Backend, Elbe) {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .lb(lines)
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    (backend, elbe)
}

/// One request from a client bound to `source` (a 127.0.0.x address), with `headers`.
async fn from(
    source: &str,
    node: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(node).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(name, _)| *name == "host") {
        request = request.header("host", "app.example");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test]
async fn source_ip_is_the_peer_address_never_x_forwarded_for() {
    bounded(Duration::from_secs(20), async {
        let (backend, elbe) = elbe_with(EXPORT_RULES).await;
        let node = elbe.node("zone-a");

        let allowed = from("127.0.0.2", node, "GET", "/export/data.csv", &[]).await;
        assert_eq!(allowed.status, 200);
        assert_eq!(
            allowed.json()["uri"],
            "/export/data.csv",
            "forwarded to the instance"
        );

        let refused = from("127.0.0.3", node, "GET", "/export/data.csv", &[]).await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.headers["content-type"], "text/plain");
        assert_eq!(refused.headers["content-length"], "17");
        assert_eq!(refused.body, "export controlled");

        // A client claiming the allowed address in X-Forwarded-For is still refused.
        let spoofed = from(
            "127.0.0.3",
            node,
            "GET",
            "/export/x",
            &[("x-forwarded-for", "127.0.0.2")],
        )
        .await;
        assert_eq!(spoofed.status, 403);

        // Other paths are no rule's business.
        assert_eq!(
            from("127.0.0.3", node, "GET", "/export", &[]).await.status,
            200
        );
        assert_eq!(
            from("127.0.0.3", node, "GET", "/index.html", &[])
                .await
                .status,
            200
        );
        assert_eq!(
            backend.requests(),
            3,
            "only forwarded requests reached the instance"
        );
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_apex_host_is_redirected_with_the_requests_path_and_query() {
    bounded(Duration::from_secs(20), async {
        let rules = r#"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 1
host_header = ["example.com"]
action = { type = "redirect", protocol = "HTTPS", host = "www.example.com", port = "443", status_code = "HTTP_301" }
"#;
        let (backend, elbe) = elbe_with(rules).await;
        let node = elbe.node("zone-a");
        let moved = from("127.0.0.1", node, "GET", "/a/b?x=1&y=2", &[("host", "Example.COM:8080")]).await;
        assert_eq!(moved.status, 301);
        assert_eq!(moved.headers["location"], "https://www.example.com:443/a/b?x=1&y=2");
        assert_eq!(moved.headers["content-length"], "0");
        assert!(moved.body.is_empty());
        let other = from("127.0.0.1", node, "GET", "/a", &[("host", "www.example.com")]).await;
        assert_eq!(other.status, 200);
        assert_eq!(backend.requests(), 1);
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn redirect_templates_use_alb_keywords() {
    bounded(Duration::from_secs(20), async {
        let rules = r##"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 5
path_pattern = ["/old/*"]
action = { type = "redirect", host = "#{host}", path = "/new/#{path}", query = "#{query}&from=#{port}", status_code = "HTTP_302" }
"##;
        let (_backend, elbe) = elbe_with(rules).await;
        let node = elbe.node("zone-a");
        let moved = from("127.0.0.1", node, "GET", "/old/page?id=7", &[]).await;
        assert_eq!(moved.status, 302);
        let port = node.port();
        assert_eq!(
            moved.headers["location"],
            format!("http://app.example:{port}/new/old/page?id=7&from={port}").as_str()
        );
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn methods_match_exactly_and_the_lowest_priority_wins() {
    bounded(Duration::from_secs(20), async {
        // Written highest priority first: the order in the file does not matter, the number does.
        let rules = r#"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 200
path_pattern = ["/api/*"]
action = { type = "fixed_response", status_code = "503", message_body = "lower" }

[[load_balancer.rule]]
load_balancer_port = 0
priority = 100
path_pattern = ["/api/*"]
http_request_method = ["DELETE", "PUT"]
action = { type = "fixed_response", status_code = 405, content_type = "application/json", message_body = "{\"error\":\"read-only\"}" }
"#;
        let (_backend, elbe) = elbe_with(rules).await;
        let node = elbe.node("zone-a");
        let delete = from("127.0.0.1", node, "DELETE", "/api/items/1", &[]).await;
        assert_eq!(delete.status, 405);
        assert_eq!(delete.headers["content-type"], "application/json");
        assert_eq!(delete.body, "{\"error\":\"read-only\"}");
        let get = from("127.0.0.1", node, "GET", "/api/items/1", &[]).await;
        assert_eq!((get.status.as_u16(), get.body.as_ref()), (503, &b"lower"[..]));
        assert!(get.headers.get("content-type").is_none(), "no content_type, no header");
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn http2_requests_match_on_their_authority() {
    bounded(Duration::from_secs(20), async {
        let rules = r#"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 1
host_header = ["*.example.com"]
action = { type = "fixed_response", status_code = 200, message_body = "h2 rule" }
"#;
        let (_backend, elbe) = elbe_with(rules).await;
        let node = elbe.node("zone-a");
        let stream = tokio::net::TcpStream::connect(node).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = Request::get(format!("http://www.example.com:{}/", node.port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "h2 rule"
        );
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn rule_answers_are_counted_and_logged_as_the_load_balancers_own() {
    bounded(Duration::from_secs(20), async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let lines = format!(
            "access_log = {{ enabled = true, path = \"{}\" }}\n{EXPORT_RULES}\n{}",
            log.display(),
            r#"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 30
path_pattern = ["/moved"]
action = { type = "redirect", path = "/here", status_code = "HTTP_302" }
"#
        );
        let (_backend, elbe) = elbe_with(&lines).await;
        let node = elbe.node("zone-a");
        assert_eq!(
            from("127.0.0.3", node, "GET", "/export/a", &[])
                .await
                .status,
            403
        );
        assert_eq!(
            from("127.0.0.3", node, "GET", "/moved", &[]).await.status,
            302
        );
        assert_eq!(
            from("127.0.0.3", node, "GET", "/moved", &[]).await.status,
            302
        );
        assert_eq!(
            from("127.0.0.2", node, "GET", "/export/a", &[])
                .await
                .status,
            200
        );
        let metrics =
            String::from_utf8(common::admin_get(&elbe, "/metrics").await.body.to_vec()).unwrap();
        let series =
            |name: &str| format!("{name}{{availability_zone=\"zone-a\",load_balancer=\"web\"}}");
        for (name, value) in [
            ("elbe_http_redirects_total", 2),
            ("elbe_http_fixed_responses_total", 1),
            ("elbe_httpcode_elb_4xx_total", 1),
            ("elbe_requests_total", 4),
        ] {
            let line = format!("{} {value}", series(name));
            assert!(
                metrics.lines().any(|l| l == line),
                "missing {line}\n{metrics}"
            );
        }
        assert!(
            metrics.contains("HTTP_Redirect_Count")
                && metrics.contains("HTTP_Fixed_Response_Count")
        );
        assert!(elbe.shutdown().await);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // Answered by elbe: no backend, -1 timings, backend status 0; then the forwarded one.
        assert!(
            lines[0].contains(" 127.0.0.3:")
                && lines[0].contains(" - -1 -1 -1 403 0 0 17 \"GET http://app.example:"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains(" - -1 -1 -1 302 0 0 0 \"GET http://app.example:"),
            "{}",
            lines[1]
        );
        assert!(lines[3].contains(" 200 200 "), "{}", lines[3]);
    })
    .await;
}
