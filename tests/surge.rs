//! ELB's surge queue and spillover (ELB-SPEC §8): requests wait for an instance below its limit; a full queue
//! answers 503 and counts as spillover.
mod common;

use std::time::Duration;

use common::*;

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

async fn metric(elbe: &Elbe, name: &str) -> f64 {
    let reply = admin_get(elbe, "/metrics").await;
    series(&String::from_utf8_lossy(&reply.body), name)
}

#[tokio::test]
async fn a_busy_instance_queues_requests_and_a_full_queue_spills_over() {
    let backend = Backend::start(Behaviour::Slow(Duration::from_millis(400))).await;
    let elbe = ConfigBuilder::new()
        .limit("backend_max_requests = 1")
        .limit("surge_queue_size = 1")
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let node = elbe.node("zone-a");
    let first = tokio::spawn(async move { get(node, "/first").await.status });
    bounded(Duration::from_secs(5), async {
        while backend.requests() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let second = tokio::spawn(async move { get(node, "/second").await.status });
    bounded(Duration::from_secs(5), async {
        while metric(&elbe, "elbe_surge_queue_length").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        backend.requests(),
        1,
        "the queued request waits for the busy instance"
    );

    let third = get(node, "/third").await;
    assert_eq!(third.status, 503, "the queue is full: spillover");
    assert!(third.body.is_empty());
    assert_eq!(metric(&elbe, "elbe_spillover_total").await, 1.0);

    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(
        second.await.unwrap(),
        200,
        "the queued request went once the instance was free"
    );
    assert_eq!(backend.requests(), 2);
    assert_eq!(metric(&elbe, "elbe_surge_queue_length").await, 0.0);
}

#[tokio::test]
async fn without_a_limit_nothing_queues() {
    let backend = Backend::start(Behaviour::Slow(Duration::from_millis(200))).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let node = elbe.node("zone-a");
    let requests: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(node, "/").await.status }))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(metric(&elbe, "elbe_spillover_total").await, 0.0);
}
