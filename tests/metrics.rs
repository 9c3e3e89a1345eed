//! `/metrics` over real sockets: exact movements per zone for known traffic, and promtool's verdict on the format.
mod common;

use std::time::Duration;

use common::*;

/// The value of one series in Prometheus text, e.g. `value(&text, "elbe_requests_total", "zone-a", None)`.
fn value(text: &str, name: &str, zone: &str, code: Option<&str>) -> f64 {
    let zone_label = format!("availability_zone=\"{zone}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&zone_label))
        .filter(|l| code.is_none_or(|c| l.contains(&format!("code=\"{c}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .next()
        .unwrap_or_else(|| panic!("no series {name} for {zone} {code:?} in\n{text}"))
}

async fn metrics_text(elbe: &Elbe) -> String {
    let reply = admin_get(elbe, "/metrics").await;
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test]
async fn known_traffic_moves_each_metric_by_exactly_its_amount_per_zone() {
    let ok = Backend::start(Behaviour::Echo).await;
    let failing = Backend::start(Behaviour::Status(500)).await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let elbe = ConfigBuilder::new()
        .zones(&[
            ("zone-a", "127.0.0.1"),
            ("zone-b", "127.0.0.2"),
            ("zone-c", "127.0.0.3"),
        ])
        .instance(instance("i-a", "zone-a", &ok))
        .instance(instance("i-b", "zone-b", &failing))
        .instance(InstanceSpec {
            id: "i-c".into(),
            zone: "zone-c".into(),
            address: closed,
        })
        .start()
        .await;
    let before = metrics_text(&elbe).await;
    for zone in ["zone-a", "zone-b"] {
        assert_eq!(value(&before, "elbe_requests_total", zone, None), 0.0);
    }

    for _ in 0..5 {
        assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
    }
    let refused = raw(
        elbe.node("zone-a"),
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    for _ in 0..3 {
        assert_eq!(get(elbe.node("zone-b"), "/").await.status, 500);
    }

    let text = metrics_text(&elbe).await;
    assert_eq!(value(&text, "elbe_requests_total", "zone-a", None), 6.0);
    assert_eq!(value(&text, "elbe_requests_total", "zone-b", None), 3.0);
    assert_eq!(
        value(&text, "elbe_httpcode_backend_total", "zone-a", Some("2XX")),
        5.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_backend_total", "zone-a", Some("5XX")),
        0.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_backend_total", "zone-b", Some("5XX")),
        3.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_backend_total", "zone-b", Some("2XX")),
        0.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_elb_4xx_total", "zone-a", None),
        1.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_elb_4xx_total", "zone-b", None),
        0.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_elb_5xx_total", "zone-a", None),
        0.0
    );
    assert_eq!(
        value(&text, "elbe_latency_seconds_count", "zone-a", None),
        5.0
    );
    assert_eq!(
        value(&text, "elbe_latency_seconds_count", "zone-b", None),
        3.0
    );
    // Health: zone-c's only instance refuses connections, so its checks fail and count as connection errors.
    assert_eq!(value(&text, "elbe_healthy_hosts", "zone-a", None), 1.0);
    assert_eq!(value(&text, "elbe_healthy_hosts", "zone-b", None), 1.0);
    assert_eq!(value(&text, "elbe_healthy_hosts", "zone-c", None), 0.0);
    assert_eq!(value(&text, "elbe_unhealthy_hosts", "zone-c", None), 1.0);
    assert_eq!(value(&text, "elbe_unhealthy_hosts", "zone-a", None), 0.0);
    assert!(
        value(
            &text,
            "elbe_backend_connection_errors_total",
            "zone-c",
            None
        ) >= 2.0
    );
    assert_eq!(
        value(
            &text,
            "elbe_backend_connection_errors_total",
            "zone-a",
            None
        ),
        0.0
    );
    // The pooled connections to zone-a's instance are idle now.
    assert!(value(&text, "elbe_backend_idle_connections", "zone-a", None) >= 1.0);
    assert_eq!(
        value(&text, "elbe_backend_active_requests", "zone-a", None),
        0.0
    );
}

#[tokio::test]
async fn no_instance_is_counted_as_elb_5xx_not_backend() {
    let elbe = ConfigBuilder::new().start().await;
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 503);
    let text = metrics_text(&elbe).await;
    assert_eq!(
        value(&text, "elbe_httpcode_elb_5xx_total", "zone-a", None),
        1.0
    );
    assert_eq!(
        value(&text, "elbe_httpcode_backend_total", "zone-a", Some("5XX")),
        0.0
    );
    assert_eq!(
        value(&text, "elbe_latency_seconds_count", "zone-a", None),
        0.0
    );
}

/// promtool from Debian's prometheus package: $PROMTOOL, `promtool` on PATH, or where ./test.sh unpacks it.
fn promtool() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return path.into();
    }
    let unpacked =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/promtool/usr/bin/promtool");
    if unpacked.exists() {
        return unpacked;
    }
    "promtool".into()
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .https(None)
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
    let text = metrics_text(&elbe).await;
    let mut child = tokio::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (./test.sh unpacks it into target/promtool; or set PROMTOOL)");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool refused the metrics:\n{said}\n{text}"
    );
    assert!(
        said.trim().is_empty(),
        "promtool has remarks (lint):\n{said}"
    );
}

#[tokio::test]
async fn idle_backend_connections_are_closed_after_the_idle_timeout_without_traffic() {
    let (_backend, elbe) = one_instance_with_idle_timeout(Behaviour::Echo, "300ms").await;
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
    let text = metrics_text(&elbe).await;
    assert_eq!(
        value(&text, "elbe_backend_idle_connections", "zone-a", None),
        1.0
    );
    // The pool's reaper runs twice per idle timeout: gone within two timeouts, with no request to notice it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let text = metrics_text(&elbe).await;
        if value(&text, "elbe_backend_idle_connections", "zone-a", None) == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pooled:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
