//! The access log over real sockets: one line per request in ELB's format, field by field.
mod common;

use std::time::Duration;

use common::*;

/// Splits an access-log line into its fields, keeping the two quoted fields whole (without their quotes).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut end = 0;
            let bytes = quoted.as_bytes();
            while end < bytes.len()
                && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
            {
                end += 1;
            }
            out.push(quoted[..end].to_string());
            rest = quoted[(end + 1).min(quoted.len())..].trim_start();
        } else {
            let (field, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(field.to_string());
            rest = tail;
        }
    }
    out
}

struct Logged {
    lines: Vec<Vec<String>>,
    /// The node's HTTP listener the traffic went to.
    node: std::net::SocketAddr,
    /// `/metrics` after the traffic.
    metrics: String,
}

/// Runs `traffic` against an elbe whose access log goes to a temporary file, stops elbe (which flushes the log),
/// and returns the lines.
async fn logged<F, Fut>(builder: ConfigBuilder, traffic: F) -> Logged
where
    F: FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let elbe = builder
        .lb(&format!(
            "access_log = {{ enabled = true, path = \"{}\" }}",
            path.display()
        ))
        .start()
        .await;
    let https = elbe
        .server()
        .listeners()
        .iter()
        .find(|l| l.protocol == elbe::config::Protocol::Https)
        .map(|l| l.address);
    let node = elbe.node("zone-a");
    traffic(node, https).await;
    let metrics = String::from_utf8(admin_get(&elbe, "/metrics").await.body.to_vec()).unwrap();
    assert!(elbe.shutdown().await);
    let text = std::fs::read_to_string(&path).unwrap();
    Logged {
        lines: text.lines().map(fields).collect(),
        node,
        metrics,
    }
}

fn assert_timestamp(field: &str) {
    // 2014-05-13T23:39:43.945958Z
    assert_eq!(field.len(), 27, "{field}");
    assert!(
        field.ends_with('Z') && field.as_bytes()[10] == b'T' && field.as_bytes()[19] == b'.',
        "{field}"
    );
}

fn assert_seconds(field: &str) {
    let (whole, micros) = field
        .split_once('.')
        .unwrap_or_else(|| panic!("not seconds: {field}"));
    assert!(whole.parse::<u64>().is_ok() && micros.len() == 6, "{field}");
}

#[tokio::test]
async fn a_normal_request_is_one_line_of_fifteen_fields() {
    let backend = Backend::start(Behaviour::Echo).await;
    let builder = ConfigBuilder::new().instance(instance("i-1", "zone-a", &backend));
    let log = logged(builder, |address, _| async move {
        let request = http::Request::post("/path?q=1")
            .header("host", "app.example:8080")
            .header("user-agent", "curl/7.38.0")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"hello",
            )))
            .unwrap();
        assert_eq!(request_to(address, request).await.status, 200);
    })
    .await;
    let node = log.node;
    assert_eq!(log.lines.len(), 1);
    let f = &log.lines[0];
    assert_eq!(f.len(), 15, "{f:?}");
    assert_timestamp(&f[0]);
    assert_eq!(f[1], "web");
    assert!(f[2].starts_with("127.0.0.1:"));
    assert_eq!(f[3], backend.address.to_string());
    for timing in &f[4..7] {
        assert_seconds(timing);
    }
    assert_eq!((f[7].as_str(), f[8].as_str()), ("200", "200"));
    assert_eq!(f[9], "5", "received bytes: the request body");
    assert!(
        f[10].parse::<u64>().unwrap() > 50,
        "sent bytes: the Echo body"
    );
    assert_eq!(
        f[11],
        format!("POST http://app.example:{}/path?q=1 HTTP/1.1", node.port())
    );
    assert_eq!(f[12], "curl/7.38.0");
    assert_eq!((f[13].as_str(), f[14].as_str()), ("-", "-"));
}

async fn request_to(
    address: std::net::SocketAddr,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Reply {
    common::request(address, request).await
}

#[tokio::test]
async fn a_504_has_no_backend_and_minus_one_timings() {
    let backend = Backend::start(Behaviour::Hang).await;
    let builder = ConfigBuilder::new()
        .lb("idle_timeout = \"200ms\"")
        .instance(instance("i-1", "zone-a", &backend));
    let log = logged(builder, |address, _| async move {
        let out = raw_response(
            address,
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 504"), "{out}");
    })
    .await;
    let f = &log.lines[0];
    assert_eq!(f.len(), 15, "{f:?}");
    assert_eq!(&f[3..9], ["-", "-1", "-1", "-1", "504", "0"]);
    assert_eq!(f[10], "0");
}

#[tokio::test]
async fn a_503_never_dispatched_is_logged_too() {
    let log = logged(ConfigBuilder::new(), |address, _| async move {
        assert_eq!(get(address, "/nothing").await.status, 503);
    })
    .await;
    let f = &log.lines[0];
    assert_eq!(&f[3..11], ["-", "-1", "-1", "-1", "503", "0", "0", "0"]);
    assert!(f[11].starts_with("GET http://example.test:"), "{f:?}");
    assert_eq!(f[12], "-", "no user agent");
}

#[tokio::test]
async fn an_https_request_records_cipher_and_protocol() {
    let backend = Backend::start(Behaviour::Echo).await;
    let builder = ConfigBuilder::new()
        .https(None)
        .instance(instance("i-1", "zone-a", &backend));
    let log = logged(builder, |_, https| async move {
        let https = https.expect("an HTTPS listener");
        let output = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--http1.1",
                "--tlsv1.2",
                "--tls-max",
                "1.2",
                "--cacert",
            ])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-ca.crt"))
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", https.port()))
            .arg(format!("https://localhost:{}/secure", https.port()))
            .output()
            .await
            .expect("curl is installed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    })
    .await;
    let f = &log.lines[0];
    assert_eq!(f.len(), 15, "{f:?}");
    assert!(
        f[11].starts_with("GET https://localhost:") && f[11].ends_with("/secure HTTP/1.1"),
        "{f:?}"
    );
    assert!(f[12].starts_with("curl/"));
    assert_eq!(f[14], "TLSv1.2");
    assert!(
        f[13].starts_with("ECDHE-") && f[13].contains("GCM"),
        "{f:?}"
    );
}

#[tokio::test]
async fn a_reload_reopens_the_log_file_like_logrotate_expects() {
    let backend = Backend::start(Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let config_path = dir.path().join("elbe.toml");
    let builder = ConfigBuilder::new()
        .lb(&format!(
            "access_log = {{ enabled = true, path = \"{}\" }}",
            log_path.display()
        ))
        .instance(instance("i-1", "zone-a", &backend));
    std::fs::write(&config_path, builder.toml()).unwrap();
    let server = elbe::server::start(elbe::config::load(&config_path).unwrap())
        .await
        .unwrap();
    let elbe = Elbe {
        server: Some(server),
    };
    elbe.wait_for_first_checks().await;

    assert_eq!(get(elbe.node("zone-a"), "/before").await.status, 200);
    let wait_for = |path: std::path::PathBuf, needle: &'static str| async move {
        bounded(Duration::from_secs(5), async {
            while !std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains(needle)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    };
    wait_for(log_path.clone(), "/before").await;
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    elbe.server()
        .reload_from(&config_path)
        .await
        .expect("the same config reloads");
    assert_eq!(get(elbe.node("zone-a"), "/after").await.status, 200);
    wait_for(log_path.clone(), "/after").await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    elbe.shutdown().await;
}

/// ELB-SPEC §11: requests that never reached an instance are logged too, including those elbe's HTTP/1 server
/// refuses before they are requests: a head that does not parse (400), one over `max_request_header_bytes` (431),
/// and one that does not arrive within `request_header_timeout` (408). Each is one line naming no request
/// (`"- - - "`), and each counts in HTTPCode_ELB_4XX.
#[tokio::test]
async fn heads_refused_before_they_are_requests_are_logged_and_counted() {
    let backend = Backend::start(Behaviour::Echo).await;
    let builder = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .limit("request_header_timeout = \"150ms\"")
        .limit("max_request_header_bytes = 8192");
    let log = logged(builder, |address, _| async move {
        let malformed = raw(
            address,
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(
            malformed.starts_with("HTTP/1.1 400 BAD_REQUEST\r\n"),
            "{malformed}"
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let too_large = raw(address, big.as_bytes(), Duration::from_secs(3)).await;
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
        let stalled = raw(address, b"GET / HTTP/1.1\r\nHo", Duration::from_secs(3)).await;
        assert_eq!(
            stalled,
            "HTTP/1.1 408 REQUEST_TIMEOUT\r\nContent-Length:0\r\nConnection: Close\r\n\r\n"
        );
    })
    .await;
    assert_eq!(log.lines.len(), 3, "{:?}", log.lines);
    for (f, status) in log.lines.iter().zip(["400", "431", "408"]) {
        assert_eq!(f.len(), 15, "{f:?}");
        assert_timestamp(&f[0]);
        assert_eq!(f[1], "web");
        assert!(f[2].starts_with("127.0.0.1:"), "{f:?}");
        assert_eq!(f[3], "-", "never dispatched: {f:?}");
        assert_eq!(&f[4..7], ["-1", "-1", "-1"], "{f:?}");
        assert_eq!((f[7].as_str(), f[8].as_str()), (status, "0"), "{f:?}");
        assert_eq!((f[9].as_str(), f[10].as_str()), ("0", "0"), "{f:?}");
        assert_eq!(f[11], "- - - ", "no request to name: {f:?}");
        assert_eq!(f[12], "-", "{f:?}");
        assert_eq!((f[13].as_str(), f[14].as_str()), ("-", "-"), "{f:?}");
    }
    let elb_4xx = log
        .metrics
        .lines()
        .find(|l| {
            l.starts_with("elbe_httpcode_elb_4xx_total{")
                && l.contains("availability_zone=\"zone-a\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(elb_4xx, Some(3.0), "{}", log.metrics);
}
