//! Registering and deregistering instances at run time through the admin API.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::{BodyExt, Full};

const LIMIT: Duration = Duration::from_secs(30);
const IN_PROGRESS: &str = "Instance registration is still in progress.";

fn registration(id: &str, zone: &str, address: SocketAddr) -> String {
    serde_json::json!({"instance_id": id, "zone": zone, "address": address.to_string()}).to_string()
}

async fn register(elbe: &Elbe, id: &str, zone: &str, address: SocketAddr) -> Reply {
    admin_send(
        elbe,
        Method::POST,
        "/load_balancers/web/instances",
        &registration(id, zone, address),
    )
    .await
}

async fn deregister(elbe: &Elbe, load_balancer: &str, id: &str) -> Reply {
    admin_send(
        elbe,
        Method::DELETE,
        &format!("/load_balancers/{load_balancer}/instances/{id}"),
        "",
    )
    .await
}

/// The instance entries of "web" in `GET /status`.
async fn status_instances(elbe: &Elbe) -> Vec<serde_json::Value> {
    let reply = admin_get(elbe, "/status").await;
    assert_eq!(reply.status, 200);
    let status = reply.json();
    let lb = status["load_balancers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lb| lb["name"] == "web")
        .cloned()
        .unwrap();
    lb["instances"].as_array().unwrap().clone()
}

async fn status_of(elbe: &Elbe, id: &str) -> Option<(String, String, String)> {
    status_instances(elbe)
        .await
        .into_iter()
        .find(|i| i["instance_id"] == id)
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (s("state"), s("reason_code"), s("description"))
        })
}

/// Polls `/status` until `id` is InService (at most 5 s). Every state seen on the way must be "registration in
/// progress" (a fresh registration of a healthy instance never fails a check).
async fn wait_in_service_via_status(elbe: &Elbe, id: &str) -> Vec<(String, String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let now = status_of(elbe, id).await.expect("the instance is listed");
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now.0 == "InService" {
            assert_eq!(now, ("InService".into(), "N/A".into(), "N/A".into()));
            return seen;
        }
        assert_eq!(
            now,
            ("OutOfService".into(), "ELB".into(), IN_PROGRESS.into()),
            "{id} on its way to InService; seen {seen:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} not InService within 5 s; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls (at most 5 s) until `count()` reaches `at_least`.
async fn wait_until(what: &str, count: impl Fn() -> usize, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} < {at_least} after 5 s",
            count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_instance_registered_at_run_time_comes_in_service_and_gets_traffic() {
    bounded(LIMIT, async {
        let elbe = ConfigBuilder::new().start().await;
        let node = elbe.node("zone-a");
        assert!(status_instances(&elbe).await.is_empty());
        assert_eq!(get(node, "/").await.status, 503, "no instance yet");

        let backend = Backend::start(Behaviour::Echo).await;
        let reply = register(&elbe, "i-new", "zone-a", backend.address).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(
            reply.headers["content-type"], "application/json",
            "{:?}",
            reply.headers
        );
        let seen = wait_in_service_via_status(&elbe, "i-new").await;
        let listed = status_instances(&elbe).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["zone"], "zone-a");
        assert_eq!(listed[0]["address"], backend.address.to_string());

        for _ in 0..20 {
            assert_eq!(get(node, "/").await.status, 200);
        }
        assert_eq!(backend.requests(), 20, "states seen: {seen:?}");
    })
    .await;
}

#[tokio::test]
async fn a_registration_first_shows_registration_in_progress() {
    bounded(LIMIT, async {
        // A slow checker (first verdict after the 1 s timeout of a check that never connects) makes the
        // in-progress state observable.
        let mut builder = ConfigBuilder::new();
        builder.health_check = "[load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n".into();
        let elbe = builder.start().await;
        // 192.0.2.0/24 (TEST-NET-1) is not routed: the check neither passes nor fails at once.
        let reply = admin_send(
            &elbe,
            Method::POST,
            "/load_balancers/web/instances",
            r#"{"instance_id": "i-pending", "zone": "zone-a", "address": "192.0.2.1:80"}"#,
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(
            status_of(&elbe, "i-pending").await,
            Some(("OutOfService".into(), "ELB".into(), IN_PROGRESS.into()))
        );
        assert_eq!(get(elbe.node("zone-a"), "/").await.status, 503);
    })
    .await;
}

#[tokio::test]
async fn a_deregistered_instance_leaves_status_and_gets_no_new_requests() {
    bounded(LIMIT, async {
        let one = Backend::start(Behaviour::Echo).await;
        let two = Backend::start(Behaviour::Echo).await;
        let elbe = ConfigBuilder::new()
            .instance(instance("i-1", "zone-a", &one))
            .instance(instance("i-2", "zone-a", &two))
            .start()
            .await;
        let node = elbe.node("zone-a");
        for _ in 0..40 {
            assert_eq!(get(node, "/").await.status, 200);
        }
        assert!(one.requests() > 0 && two.requests() > 0);

        let reply = deregister(&elbe, "web", "i-1").await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let listed: Vec<String> = status_instances(&elbe)
            .await
            .iter()
            .map(|i| i["instance_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, vec!["i-2".to_string()]);

        let (before_one, before_two) = (one.requests(), two.requests());
        for _ in 0..30 {
            assert_eq!(get(node, "/").await.status, 200);
        }
        assert_eq!(one.requests(), before_one, "no new request to i-1");
        assert_eq!(two.requests(), before_two + 30);

        // Deregistering again, or an instance never registered: 404.
        let again = deregister(&elbe, "web", "i-1").await;
        assert_eq!(again.status, 404);
        assert!(again.json()["error"].as_str().unwrap().contains("i-1"));
        let unknown = deregister(&elbe, "web", "i-nope").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.json()["error"].is_string());

        // An unknown load balancer: 404 naming it, for DELETE and POST alike.
        let reply = deregister(&elbe, "nosuchlb", "i-2").await;
        assert_eq!(reply.status, 404);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains("nosuchlb"), "{error}");
        let reply = admin_send(
            &elbe,
            Method::POST,
            "/load_balancers/nosuchlb/instances",
            &registration("i-3", "zone-a", one.address),
        )
        .await;
        assert_eq!(reply.status, 404);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains("nosuchlb"), "{error}");
        assert_eq!(
            status_instances(&elbe).await.len(),
            1,
            "i-2 stays registered"
        );
        assert_eq!(status_of(&elbe, "i-2").await.unwrap().0, "InService");
    })
    .await;
}

/// One request on `sender`'s connection; the status or why it failed.
async fn keep_alive_get(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
) -> Result<u16, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let request = http::Request::get("/load")
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

async fn fresh_get(node: SocketAddr) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(node)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    keep_alive_get(&mut sender).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_deregistration_under_load_lose_no_request() {
    bounded(LIMIT, async {
        let first = Backend::start(Behaviour::Echo).await;
        let second = Backend::start(Behaviour::Echo).await;
        // With connection draining (ELB-SPEC §5): the requests on the deregistered instance finish.
        let elbe = ConfigBuilder::new()
            .instance(instance("i-first", "zone-a", &first))
            .lb("connection_draining = { enabled = true, timeout = \"5s\" }")
            .start()
            .await;
        let node = elbe.node("zone-a");

        // Four clients: two on one keep-alive connection each, two on a fresh connection per request. Each stops
        // when told to, or after 2,000 requests.
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for c in 0..4 {
            let (stop, sent) = (stop.clone(), sent.clone());
            clients.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut sender = None;
                for _ in 0..2000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let result = if c < 2 {
                        if sender.is_none() {
                            let stream = tokio::net::TcpStream::connect(node).await.unwrap();
                            let (s, connection) = hyper::client::conn::http1::handshake(
                                hyper_util::rt::TokioIo::new(stream),
                            )
                            .await
                            .unwrap();
                            tokio::spawn(connection);
                            sender = Some(s);
                        }
                        keep_alive_get(sender.as_mut().unwrap()).await
                    } else {
                        fresh_get(node).await
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    match result {
                        Ok(200) => {}
                        Ok(status) => failures.push(format!("status {status}")),
                        Err(error) => {
                            failures.push(error);
                            sender = None;
                        }
                    }
                }
                failures
            }));
        }

        wait_until("first gets traffic", || first.requests(), 20).await;
        let reply = register(&elbe, "i-second", "zone-a", second.address).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        wait_for_health(&elbe, "i-second", "InService", "N/A").await;
        wait_until("second gets traffic", || second.requests(), 20).await;

        let reply = deregister(&elbe, "web", "i-first").await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let first_at_deregistration = first.requests();
        let second_at_deregistration = second.requests();
        wait_until(
            "second carries on alone",
            || second.requests(),
            second_at_deregistration + 50,
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        // Its drain is over once the requests on it ended: then it is gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while instance_health(&elbe, "i-first").is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the drain never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let mut failures = Vec::new();
        for client in clients {
            failures.extend(client.await.expect("client task"));
        }
        let total = sent.load(Ordering::SeqCst);
        assert!(
            failures.is_empty(),
            "{} of {total} requests failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(10)]
        );
        assert!(first.requests() >= 20 && second.requests() >= 20);
        // Only requests already dispatched when it was deregistered (at most one per client) may still reach it.
        assert!(
            first.requests() <= first_at_deregistration + 4,
            "i-first got {} requests after deregistration",
            first.requests() - first_at_deregistration
        );
        assert_eq!(
            first.requests() + second.requests(),
            total,
            "every request reached one instance exactly once"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_registration_bodies_are_400_with_a_json_error() {
    bounded(LIMIT, async {
        let backend = Backend::start(Behaviour::Echo).await;
        let elbe = ConfigBuilder::new()
            .instance(instance("i-1", "zone-a", &backend))
            .start()
            .await;
        let address = backend.address.to_string();
        let cases = [
            ("invalid JSON", "{not json".to_string()),
            ("empty body", String::new()),
            (
                "unknown field",
                serde_json::json!({"instance_id": "i-x", "zone": "zone-a", "address": address, "weight": 3})
                    .to_string(),
            ),
            (
                "missing field",
                serde_json::json!({"instance_id": "i-x", "zone": "zone-a"}).to_string(),
            ),
            (
                "bad address",
                serde_json::json!({"instance_id": "i-x", "zone": "zone-a", "address": "not an address!"})
                    .to_string(),
            ),
            (
                "port 0",
                serde_json::json!({"instance_id": "i-x", "zone": "zone-a", "address": "127.0.0.1:0"})
                    .to_string(),
            ),
            (
                "wrong type",
                serde_json::json!({"instance_id": 7, "zone": "zone-a", "address": address})
                    .to_string(),
            ),
        ];
        for (what, body) in &cases {
            let reply = admin_send(&elbe, Method::POST, "/load_balancers/web/instances", body).await;
            assert_eq!(reply.status, 400, "{what}: {:?}", reply.body);
            assert_eq!(reply.headers["content-type"], "application/json", "{what}");
            let json = reply.json();
            let error = json["error"].as_str().unwrap_or_else(|| panic!("{what}: {json}"));
            assert!(!error.is_empty(), "{what}");
        }
        let listed = status_instances(&elbe).await;
        assert_eq!(listed.len(), 1, "nothing was registered: {listed:?}");
    })
    .await;
}

#[tokio::test]
async fn registering_a_registered_instance_again_keeps_it_in_service() {
    let (backend, elbe) = one_echo_instance().await;
    assert_eq!(instance_health(&elbe, "i-1").unwrap().0, "InService");
    let body = format!(
        r#"{{"instance_id":"i-1","zone":"zone-a","address":"{}"}}"#,
        backend.address
    );
    let reply = admin_send(
        &elbe,
        http::Method::POST,
        "/load_balancers/web/instances",
        &body,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(instance_health(&elbe, "i-1").unwrap().0, "InService");
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
}

#[tokio::test]
async fn ids_are_validated_and_can_be_named_percent_encoded() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("team/i-1", "zone-a", &backend))
        .start()
        .await;
    let bad = format!(
        r#"{{"instance_id":"a b","zone":"zone-a","address":"{}"}}"#,
        backend.address
    );
    let reply = admin_send(
        &elbe,
        http::Method::POST,
        "/load_balancers/web/instances",
        &bad,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("instance_id"));
    let reply = admin_send(
        &elbe,
        http::Method::DELETE,
        "/load_balancers/web/instances/team%2Fi-1",
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert!(instance_health(&elbe, "team/i-1").is_none());
}
