//! Connection draining (ELB-SPEC §5) over real sockets: a deregistered instance gets no new requests; with
//! draining on it reports InService / "Instance deregistration currently in progress." while its requests finish,
//! and is gone when they have (or its timeout passed, cutting the rest with ELB's 504); with draining off its
//! requests are cut at once (504). An instance that fails its health checks leaves rotation and its requests
//! finish. Idle pooled connections to a removed instance close at once.
mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(20);

async fn deregister(elbe: &Elbe, id: &str) {
    let reply = admin_send(
        elbe,
        http::Method::DELETE,
        &format!("/load_balancers/web/instances/{id}"),
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

/// Waits until `count()` reaches `at_least`.
async fn wait_until(what: &str, count: impl Fn() -> usize, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An instance that reads requests and never answers; it says when a request (not a health check's bare connect)
/// has arrived.
async fn hanging_instance() -> (InstanceSpec, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = arrived.send(());
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    let spec = InstanceSpec {
        id: "i-hang".into(),
        zone: "zone-a".into(),
        address,
    };
    (spec, arrivals)
}

/// Waits until the instance is no longer registered.
async fn wait_gone(elbe: &Elbe, id: &str) -> Duration {
    let started = tokio::time::Instant::now();
    while instance_health(elbe, id).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{id} never left"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn with_draining_a_request_in_flight_finishes_and_the_instance_reports_deregistration_in_progress(
) {
    bounded(LIMIT, async {
        let slow = Backend::start(Behaviour::Slow(Duration::from_millis(600))).await;
        let other = Backend::start(Behaviour::Echo).await;
        let elbe = ConfigBuilder::new()
            .instance(instance("i-slow", "zone-a", &slow))
            .instance(instance("i-other", "zone-a", &other))
            .lb("connection_draining = { enabled = true, timeout = \"10s\" }")
            .start()
            .await;
        let node = elbe.node("zone-a");
        // Requests until one is on the slow instance.
        let in_flight = tokio::spawn(async move { get(node, "/slow").await });
        let other_first = tokio::spawn(async move { get(node, "/other").await });
        wait_until("a request reached the slow instance", || slow.requests(), 1).await;
        deregister(&elbe, "i-slow").await;
        assert_eq!(
            instance_health(&elbe, "i-slow"),
            Some((
                "InService".to_owned(),
                "N/A".to_owned(),
                "Instance deregistration currently in progress.".to_owned()
            ))
        );
        // New requests go to the other instance only.
        for _ in 0..5 {
            let reply = get(node, "/new").await;
            assert_eq!(reply.status, 200);
        }
        assert_eq!(
            slow.requests(),
            1,
            "no new request reached the draining instance"
        );
        let reply = in_flight.await.unwrap();
        assert_eq!(reply.status, 200, "the request in flight finished");
        let _ = other_first.await;
        let gone_after = wait_gone(&elbe, "i-slow").await;
        assert!(
            gone_after < Duration::from_secs(2),
            "gone {gone_after:?} after its last request ended"
        );
    })
    .await;
}

#[tokio::test]
async fn the_drain_timeout_cuts_what_is_left_with_elbs_504() {
    bounded(LIMIT, async {
        let (hang, mut arrivals) = hanging_instance().await;
        let elbe = ConfigBuilder::new()
            .instance(hang)
            .lb("connection_draining = { enabled = true, timeout = \"400ms\" }")
            .start()
            .await;
        let node = elbe.node("zone-a");
        let started = tokio::time::Instant::now();
        let in_flight = tokio::spawn(async move {
            raw_response(
                node,
                b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_secs(10),
            )
            .await
        });
        arrivals
            .recv()
            .await
            .expect("the request reached the instance");
        deregister(&elbe, "i-hang").await;
        let answer = in_flight.await.unwrap();
        let waited = started.elapsed();
        assert!(
            answer.starts_with("HTTP/1.1 504 GATEWAY_TIMEOUT\r\n"),
            "{answer}"
        );
        assert!(
            waited >= Duration::from_millis(350),
            "cut after {waited:?}, before the drain timeout"
        );
        assert!(waited < Duration::from_secs(5), "cut after {waited:?}");
        wait_gone(&elbe, "i-hang").await;
    })
    .await;
}

#[tokio::test]
async fn without_draining_a_request_in_flight_is_cut_at_once_with_elbs_504() {
    bounded(LIMIT, async {
        let (hang, mut arrivals) = hanging_instance().await;
        let elbe = ConfigBuilder::new()
            .instance(hang)
            .lb("idle_timeout = \"30s\"")
            .start()
            .await;
        let node = elbe.node("zone-a");
        let in_flight = tokio::spawn(async move {
            raw_response(
                node,
                b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_secs(10),
            )
            .await
        });
        arrivals
            .recv()
            .await
            .expect("the request reached the instance");
        let deregistered = tokio::time::Instant::now();
        deregister(&elbe, "i-hang").await;
        assert_eq!(instance_health(&elbe, "i-hang"), None, "gone at once");
        let answer = in_flight.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 504 GATEWAY_TIMEOUT\r\n"),
            "{answer}"
        );
        assert!(answer.contains("content-length: 0\r\n"), "{answer}");
        assert!(
            deregistered.elapsed() < Duration::from_secs(2),
            "cut after {:?}",
            deregistered.elapsed()
        );
        assert_eq!(get(node, "/").await.status, 503, "nothing left to route to");
    })
    .await;
}

/// A streaming response is cut too: the client sees the connection end before the body does.
#[tokio::test]
async fn without_draining_a_response_streaming_from_the_instance_is_cut() {
    bounded(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // An instance that starts a 1 MB response and then stops sending.
        let _task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst bytes",
                            )
                            .await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                });
            }
        });
        let elbe = ConfigBuilder::new()
            .instance(InstanceSpec {
                id: "i-stream".into(),
                zone: "zone-a".into(),
                address,
            })
            .lb("idle_timeout = \"30s\"")
            .start()
            .await;
        let mut stream = send(elbe.node("zone-a"), b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("first bytes") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the first bytes");
            got.extend_from_slice(&chunk[..n]);
        }
        let deregistered = tokio::time::Instant::now();
        deregister(&elbe, "i-stream").await;
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the response was not cut");
        assert!(deregistered.elapsed() < Duration::from_secs(2));
    })
    .await;
}

/// An instance that fails its health checks goes OutOfService at once; the request on it finishes (the drain
/// timeout does not apply to health).
#[tokio::test]
async fn an_instance_failing_its_checks_leaves_rotation_and_its_request_finishes() {
    bounded(LIMIT, async {
        let slow = Backend::start(Behaviour::Slow(Duration::from_millis(800))).await;
        // A separate health port (DESIGN.md "Health-check port"): closing it fails the checks, not the traffic.
        let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut builder = ConfigBuilder::new()
            .instance(instance("i-slow", "zone-a", &slow))
            .lb("connection_draining = { enabled = true, timeout = \"100ms\" }");
        builder.health_check = format!(
            "[load_balancer.health_check]\ntarget = \"TCP:{}\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n",
            health.local_addr().unwrap().port()
        );
        let elbe = builder.start().await;
        let node = elbe.node("zone-a");
        let in_flight = tokio::spawn(async move { get(node, "/slow").await });
        wait_until("the request reached the instance", || slow.requests(), 1).await;
        drop(health);
        wait_for_health(
            &elbe,
            "i-slow",
            "OutOfService",
            "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.",
        )
        .await;
        assert_eq!(get(node, "/").await.status, 503, "out of rotation");
        let reply = in_flight.await.unwrap();
        assert_eq!(reply.status, 200, "its request finished, past the drain timeout: health is not a drain");
    })
    .await;
}

/// Idle keep-alive connections to a deregistered instance are closed at once, not at the pool's next reaping.
#[tokio::test]
async fn idle_pooled_connections_to_a_removed_instance_close_at_once() {
    bounded(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (closed, mut closes) = tokio::sync::mpsc::unbounded_channel::<()>();
        let _task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                answered = true;
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                    .await;
                            }
                        }
                    }
                    // Health checks connect and close without a request: only pooled connections count.
                    if answered {
                        let _ = closed.send(());
                    }
                });
            }
        });
        let elbe = ConfigBuilder::new()
            .instance(InstanceSpec {
                id: "i-pooled".into(),
                zone: "zone-a".into(),
                address,
            })
            .lb("idle_timeout = \"60s\"")
            .start()
            .await;
        assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
        deregister(&elbe, "i-pooled").await;
        let closed = tokio::time::timeout(Duration::from_secs(2), closes.recv()).await;
        assert!(
            matches!(closed, Ok(Some(()))),
            "the pooled connection stayed open"
        );
    })
    .await;
}
