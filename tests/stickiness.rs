//! Sticky sessions over real sockets (ELB-SPEC §6): the exact AWSELB cookie of each policy, a session cookie, a
//! tampered cookie, an instance gone OutOfService under each policy, an HTTP/2 client, and a key that survives a
//! restart because it is kept in `state_dir`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, wait_for_health, ConfigBuilder, Elbe, InstanceSpec, Reply};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An instance that answers every request with its id (in `x-instance` and the body), sets `set_cookie` if given,
/// and answers its health check (`/health`) 200 while `up`, else 503.
struct Named {
    id: &'static str,
    address: SocketAddr,
    up: Arc<AtomicBool>,
}

impl Named {
    async fn start(id: &'static str, set_cookie: Option<&'static str>) -> Named {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let health = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let up = health.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let up = up.load(Ordering::SeqCst);
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(id)));
                        if request.uri().path() == "/health" {
                            if !up {
                                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            }
                            return Ok::<_, Infallible>(response);
                        }
                        response
                            .headers_mut()
                            .insert("x-instance", id.parse().unwrap());
                        if let Some(cookie) = set_cookie {
                            response
                                .headers_mut()
                                .insert("set-cookie", cookie.parse().unwrap());
                        }
                        Ok(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Named { id, address, up }
    }

    fn spec(&self) -> InstanceSpec {
        InstanceSpec {
            id: self.id.into(),
            zone: "zone-a".into(),
            address: self.address,
        }
    }
}

/// HTTP health checks every 100 ms on the instances' own port, so a test can take one out of service.
const HTTP_HEALTH_CHECK: &str =
    "[load_balancer.health_check]\ntarget = \"HTTP:80/health\"\ninterval = \"100ms\"\n\
     timeout = \"80ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";

/// A configuration for `instances` with `policy` (a `[[load_balancer.policy]]` table named "sticky") on the HTTP
/// listener, and `state_dir` in `state`.
fn config(
    instances: &[&Named],
    policy: &str,
    state: &Path,
    extra_listener: Option<&str>,
) -> String {
    let mut builder = ConfigBuilder::new().lb(policy);
    builder.health_check = HTTP_HEALTH_CHECK.to_string();
    builder.listeners[0].push_str("policy_names = [\"sticky\"]\n");
    if let Some(listener) = extra_listener {
        builder.listeners.push(listener.to_string());
    }
    for instance in instances {
        builder = builder.instance(instance.spec());
    }
    format!("state_dir = \"{}\"\n{}", state.display(), builder.toml())
}

async fn start(text: &str) -> Elbe {
    let config = elbe::config::parse(text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    let elbe = Elbe {
        server: Some(elbe::server::start(config).await.expect("elbe starts")),
    };
    elbe.wait_for_first_checks().await;
    elbe
}

/// A GET of `/` with `cookie` (if any) on a fresh HTTP/1.1 connection.
async fn get(address: SocketAddr, cookie: Option<&str>) -> Reply {
    let mut request = Request::get("/").header("host", "example.test");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    common::request(address, request.body(Full::new(Bytes::new())).unwrap()).await
}

fn instance_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.headers["x-instance"].to_str().unwrap().to_string()
}

/// The response's `Set-Cookie` values (the instance's and elbe's).
fn set_cookies(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The AWSELB `Set-Cookie` line elbe added, checked against ELB's format with `attributes` after the value.
fn awselb(reply: &Reply, attributes: &str) -> String {
    let lines: Vec<String> = set_cookies(reply)
        .into_iter()
        .filter(|l| l.starts_with("AWSELB="))
        .collect();
    assert_eq!(lines.len(), 1, "one AWSELB cookie in {lines:?}");
    let line = &lines[0];
    let value = line["AWSELB=".len()..].split(';').next().unwrap();
    assert!(
        value.len() > 32
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "an upper-case hex value: {line}"
    );
    assert_eq!(line, &format!("AWSELB={value}{attributes}"));
    assert_eq!(reply.headers["cache-control"], "no-cache=\"set-cookie\"");
    format!("AWSELB={value}")
}

const LB_POLICY: &str =
    "[[load_balancer.policy]]\nname = \"sticky\"\ntype = \"LBCookieStickinessPolicyType\"\n\
     cookie_expiration_period = \"600s\"";

#[tokio::test]
async fn lb_cookie_sticks_with_max_age_and_is_not_refreshed() {
    bounded(Duration::from_secs(20), async {
        let (a, b) = (
            Named::start("i-a", None).await,
            Named::start("i-b", None).await,
        );
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a, &b], LB_POLICY, state.path(), None)).await;
        let node = elbe.node("zone-a");

        let first = get(node, None).await;
        let cookie = awselb(&first, ";PATH=/;MAX-AGE=600");
        let stuck = instance_of(&first);
        for _ in 0..20 {
            let next = get(node, Some(&format!("session=1; {cookie}"))).await;
            assert_eq!(
                instance_of(&next),
                stuck,
                "every request with the cookie goes to its instance"
            );
            assert!(
                set_cookies(&next).is_empty(),
                "ELB does not refresh the cookie"
            );
            assert!(next.headers.get("cache-control").is_none());
        }
        // Without the cookie both instances are used, each with its own cookie.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..40 {
            let reply = get(node, None).await;
            awselb(&reply, ";PATH=/;MAX-AGE=600");
            seen.insert(instance_of(&reply));
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        // The key was generated and kept, private, in state_dir.
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(state.path().join("stickiness.key")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_session_cookie_has_no_max_age() {
    bounded(Duration::from_secs(20), async {
        let a = Named::start("i-a", None).await;
        let state = tempfile::tempdir().unwrap();
        let policy =
            "[[load_balancer.policy]]\nname = \"sticky\"\ntype = \"LBCookieStickinessPolicyType\"";
        let elbe = start(&config(&[&a], policy, state.path(), None)).await;
        awselb(&get(elbe.node("zone-a"), None).await, ";PATH=/");
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_tampered_or_foreign_cookie_is_ignored_and_replaced() {
    bounded(Duration::from_secs(20), async {
        let (a, b) = (
            Named::start("i-a", None).await,
            Named::start("i-b", None).await,
        );
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a, &b], LB_POLICY, state.path(), None)).await;
        let node = elbe.node("zone-a");
        // A real cookie for i-a, then the same cookie edited to name i-b ("i-a" is 692D61 in hex).
        let cookie = loop {
            let reply = get(node, None).await;
            if instance_of(&reply) == "i-a" {
                break awselb(&reply, ";PATH=/;MAX-AGE=600");
            }
        };
        let forged = cookie.replacen("692D61", "692D62", 1);
        assert_ne!(forged, cookie);
        let mut landed = std::collections::HashSet::new();
        for bad in [forged.as_str(), "AWSELB=0169", "AWSELB=not-hex-at-all"] {
            for _ in 0..10 {
                let reply = get(node, Some(bad)).await;
                landed.insert(instance_of(&reply));
                let fresh = awselb(&reply, ";PATH=/;MAX-AGE=600");
                assert_ne!(fresh, bad, "replaced with a cookie elbe made");
            }
        }
        assert_eq!(
            landed.len(),
            2,
            "an ignored cookie picks as usual: {landed:?}"
        );
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn lb_cookie_for_an_instance_out_of_service_gets_a_new_pick_and_cookie() {
    bounded(Duration::from_secs(20), async {
        let (a, b) = (Named::start("i-a", None).await, Named::start("i-b", None).await);
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a, &b], LB_POLICY, state.path(), None)).await;
        let node = elbe.node("zone-a");
        let cookie = loop {
            let reply = get(node, None).await;
            if instance_of(&reply) == "i-a" {
                break awselb(&reply, ";PATH=/;MAX-AGE=600");
            }
        };
        a.up.store(false, Ordering::SeqCst);
        let failed = "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.";
        wait_for_health(&elbe, "i-a", "OutOfService", failed).await;
        let moved = get(node, Some(&cookie)).await;
        assert_eq!(instance_of(&moved), "i-b");
        let new_cookie = awselb(&moved, ";PATH=/;MAX-AGE=600");
        assert_ne!(new_cookie, cookie);
        // Once i-a is back, the old cookie leads there again and the new one stays on i-b.
        a.up.store(true, Ordering::SeqCst);
        wait_for_health(&elbe, "i-a", "InService", "N/A").await;
        assert_eq!(instance_of(&get(node, Some(&cookie)).await), "i-a");
        assert_eq!(instance_of(&get(node, Some(&new_cookie)).await), "i-b");
        elbe.shutdown().await;
    })
    .await;
}

const APP_POLICY: &str =
    "[[load_balancer.policy]]\nname = \"sticky\"\ntype = \"AppCookieStickinessPolicyType\"\n\
     cookie_name = \"JSESSIONID\"";

#[tokio::test]
async fn app_cookie_is_followed_with_its_lifetime_and_flags() {
    bounded(Duration::from_secs(20), async {
        let a = Named::start(
            "i-a",
            Some("JSESSIONID=s1; Path=/; Max-Age=120; Secure; HttpOnly"),
        )
        .await;
        let b = Named::start(
            "i-b",
            Some("JSESSIONID=s2; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
        )
        .await;
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a, &b], APP_POLICY, state.path(), None)).await;
        let node = elbe.node("zone-a");
        let mut cookies = std::collections::HashMap::new();
        for _ in 0..40 {
            let reply = get(node, None).await;
            let id = instance_of(&reply);
            let attributes = if id == "i-a" {
                ";PATH=/;MAX-AGE=120;SECURE;HTTPONLY"
            } else {
                ";PATH=/;EXPIRES=Wed, 21 Oct 2037 07:28:00 GMT"
            };
            let cookie = awselb(&reply, attributes);
            assert!(
                set_cookies(&reply)
                    .iter()
                    .any(|l| l.starts_with("JSESSIONID=")),
                "the app's own cookie passes"
            );
            cookies.insert(id, cookie);
        }
        assert_eq!(cookies.len(), 2);
        for (id, cookie) in &cookies {
            for _ in 0..10 {
                assert_eq!(&instance_of(&get(node, Some(cookie)).await), id);
            }
        }
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_app_cookie_with_a_trailing_semicolon_is_ignored() {
    bounded(Duration::from_secs(20), async {
        let a = Named::start("i-a", Some("JSESSIONID=s1; Path=/;")).await;
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a], APP_POLICY, state.path(), None)).await;
        let reply = get(elbe.node("zone-a"), None).await;
        assert_eq!(set_cookies(&reply), ["JSESSIONID=s1; Path=/;"], "no AWSELB");
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn app_cookie_stickiness_moves_for_good_when_its_instance_fails() {
    bounded(Duration::from_secs(20), async {
        // Only i-a sets the app cookie; i-b does not, so the moved AWSELB is a session cookie.
        let a = Named::start("i-a", Some("JSESSIONID=s1; Max-Age=300")).await;
        let b = Named::start("i-b", None).await;
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a, &b], APP_POLICY, state.path(), None)).await;
        let node = elbe.node("zone-a");
        let cookie = loop {
            let reply = get(node, None).await;
            if instance_of(&reply) == "i-a" {
                break awselb(&reply, ";PATH=/;MAX-AGE=300");
            }
        };
        a.up.store(false, Ordering::SeqCst);
        let failed = "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.";
        wait_for_health(&elbe, "i-a", "OutOfService", failed).await;
        let moved = get(node, Some(&format!("JSESSIONID=s1; {cookie}"))).await;
        assert_eq!(instance_of(&moved), "i-b");
        let moved_cookie = awselb(&moved, ";PATH=/");
        a.up.store(true, Ordering::SeqCst);
        wait_for_health(&elbe, "i-a", "InService", "N/A").await;
        for _ in 0..10 {
            let reply = get(node, Some(&format!("JSESSIONID=s1; {moved_cookie}"))).await;
            assert_eq!(instance_of(&reply), "i-b", "stays on the new instance after the old one recovers");
            assert!(set_cookies(&reply).is_empty());
        }
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn http2_clients_get_the_same_cookie_and_stickiness() {
    bounded(Duration::from_secs(20), async {
        let (a, b) = (
            Named::start("i-a", None).await,
            Named::start("i-b", None).await,
        );
        let state = tempfile::tempdir().unwrap();
        let elbe = start(&config(&[&a, &b], LB_POLICY, state.path(), None)).await;
        let node = elbe.node("zone-a");
        let stream = tokio::net::TcpStream::connect(node).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let mut send = |cookie: Option<String>| {
            let mut request = Request::get(format!("http://example.test:{}/", node.port()));
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            let request = request.body(Full::new(Bytes::new())).unwrap();
            let response = sender.send_request(request);
            async move {
                let response = response.await.unwrap();
                assert_eq!(response.version(), http::Version::HTTP_2);
                let (parts, body) = response.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }
            }
        };
        let first = send(None).await;
        let cookie = awselb(&first, ";PATH=/;MAX-AGE=600");
        let stuck = instance_of(&first);
        for _ in 0..10 {
            let reply = send(Some(cookie.clone())).await;
            assert_eq!(instance_of(&reply), stuck);
            assert!(set_cookies(&reply).is_empty());
        }
        // HTTP/1 and HTTP/2 cookies are the same thing.
        assert_eq!(instance_of(&get(node, Some(&cookie)).await), stuck);
        elbe.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cookies_survive_a_restart_through_the_kept_key_and_bind_to_the_back_end_port() {
    bounded(Duration::from_secs(30), async {
        let (a, b) = (
            Named::start("i-a", None).await,
            Named::start("i-b", None).await,
        );
        let state = tempfile::tempdir().unwrap();
        let text = config(&[&a, &b], LB_POLICY, state.path(), None);
        let elbe = start(&text).await;
        let first = get(elbe.node("zone-a"), None).await;
        let cookie = awselb(&first, ";PATH=/;MAX-AGE=600");
        let stuck = instance_of(&first);
        assert!(elbe.shutdown().await);

        let elbe = start(&text).await;
        for _ in 0..10 {
            let reply = get(elbe.node("zone-a"), Some(&cookie)).await;
            assert_eq!(
                instance_of(&reply),
                stuck,
                "the restarted elbe honours the cookie"
            );
            assert!(set_cookies(&reply).is_empty());
        }
        elbe.shutdown().await;

        // The same key configured on another load balancer name does not accept the cookie.
        let renamed = text.replace("name = \"web\"", "name = \"api\"");
        let elbe = start(&renamed).await;
        let address = elbe.server().listener("api", "zone-a").unwrap();
        let reply = get(address, Some(&cookie)).await;
        awselb(&reply, ";PATH=/;MAX-AGE=600");
        elbe.shutdown().await;
    })
    .await;
}
