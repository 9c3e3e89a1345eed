//! Availability zones (ELB-SPEC §3): zone affinity, fallback to another zone and return, cross-zone spreading,
//! unequal zones, instances in a zone that is not enabled.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

const TWO_ZONES: &[(&str, &str)] = &[("zone-a", "127.0.0.1"), ("zone-b", "127.0.0.2")];
const FAILED: &str =
    "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.";
const ZONE_NOT_ENABLED: &str =
    "Instance is in the EC2 Availability Zone for which LoadBalancer is not configured to route traffic to.";
const LIMIT: Duration = Duration::from_secs(30);

/// Sends `n` sequential GETs (fresh connection each) to `node`; every one must be a 200.
async fn send_ok(node: SocketAddr, n: usize) {
    for i in 0..n {
        let reply = get(node, &format!("/r{i}")).await;
        assert_eq!(reply.status, 200, "request {i} to {node}: {:?}", reply.body);
    }
}

/// Binds `addr` again once the dropped backend's listener is gone (at most 5 s).
async fn rebind(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot bind {addr} again: {error}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn share(count: usize, total: usize) -> f64 {
    count as f64 / total as f64
}

#[tokio::test]
async fn each_node_sends_to_its_own_zone() {
    bounded(LIMIT, async {
        let (a, b, elbe) = two_zones_one_instance_each().await;
        assert_eq!(instance_health(&elbe, "i-a1").unwrap().0, "InService");
        assert_eq!(instance_health(&elbe, "i-b1").unwrap().0, "InService");

        send_ok(elbe.node("zone-a"), 50).await;
        assert_eq!(
            (a.requests(), b.requests()),
            (50, 0),
            "zone-a's node sends only to zone-a"
        );
        send_ok(elbe.node("zone-b"), 50).await;
        assert_eq!(
            (a.requests(), b.requests()),
            (50, 50),
            "zone-b's node sends only to zone-b"
        );
    })
    .await;
}

#[tokio::test]
async fn a_zone_without_healthy_instance_falls_back_to_another_zone_and_returns() {
    bounded(LIMIT, async {
        let (a, b, elbe) = two_zones_one_instance_each().await;
        let node_a = elbe.node("zone-a");
        send_ok(node_a, 10).await;
        assert_eq!((a.requests(), b.requests()), (10, 0));

        // zone-a's only instance dies.
        let address = a.address;
        let old_a = a.requests.clone();
        drop(a);
        wait_for_health(&elbe, "i-a1", "OutOfService", FAILED).await;
        assert_eq!(
            instance_health(&elbe, "i-a1").unwrap().1,
            "Instance",
            "reason code of a failed instance"
        );

        // ELB-SPEC §3 (2012+): the node forwards to healthy instances in another enabled zone.
        send_ok(node_a, 20).await;
        assert_eq!(b.requests(), 20, "zone-a's node fell back to zone-b");
        assert_eq!(old_a.load(Ordering::SeqCst), 10);

        // The instance comes back on the same address.
        let revived = Backend::serve(rebind(address).await, Behaviour::Echo);
        wait_for_health(&elbe, "i-a1", "InService", "N/A").await;
        send_ok(node_a, 20).await;
        let landed_on_a = revived.requests() + old_a.load(Ordering::SeqCst) - 10;
        assert_eq!(
            landed_on_a,
            20,
            "zone-a's node returned to zone-a (revived instance got {}, zone-b {})",
            revived.requests(),
            b.requests()
        );
        assert_eq!(b.requests(), 20, "zone-b got nothing more");
    })
    .await;
}

#[tokio::test]
async fn no_instance_in_service_anywhere_is_503_with_empty_body() {
    bounded(LIMIT, async {
        let (a, b, elbe) = two_zones_one_instance_each().await;
        send_ok(elbe.node("zone-a"), 1).await;
        drop(a);
        drop(b);
        wait_for_health(&elbe, "i-a1", "OutOfService", FAILED).await;
        wait_for_health(&elbe, "i-b1", "OutOfService", FAILED).await;
        for zone in ["zone-a", "zone-b"] {
            for _ in 0..3 {
                let reply = get(elbe.node(zone), "/").await;
                assert_eq!(reply.status, 503, "{zone}");
                assert!(
                    reply.body.is_empty(),
                    "{zone}: ELB's 503 has an empty body, got {:?}",
                    reply.body
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn cross_zone_on_spreads_one_node_over_every_zone() {
    bounded(LIMIT, async {
        let a = Backend::start(Behaviour::Echo).await;
        let bs = [
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Echo).await,
        ];
        let elbe = ConfigBuilder::new()
            .zones(TWO_ZONES)
            .lb("cross_zone_load_balancing = true")
            .instance(instance("i-a1", "zone-a", &a))
            .instance(instance("i-b1", "zone-b", &bs[0]))
            .instance(instance("i-b2", "zone-b", &bs[1]))
            .instance(instance("i-b3", "zone-b", &bs[2]))
            .start()
            .await;
        send_ok(elbe.node("zone-a"), 400).await;
        let counts = [
            a.requests(),
            bs[0].requests(),
            bs[1].requests(),
            bs[2].requests(),
        ];
        assert_eq!(counts.iter().sum::<usize>(), 400, "{counts:?}");
        for (i, &count) in counts.iter().enumerate() {
            let s = share(count, 400);
            assert!(
                (0.15..=0.35).contains(&s),
                "instance {i} got {count} of 400 ({s:.2}); all: {counts:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn unequal_zones_with_cross_zone_off_split_per_node() {
    bounded(LIMIT, async {
        let a = Backend::start(Behaviour::Echo).await;
        let bs = [
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Echo).await,
            Backend::start(Behaviour::Echo).await,
        ];
        // Cross-zone off is the API default (ELB-SPEC §3).
        let elbe = ConfigBuilder::new()
            .zones(TWO_ZONES)
            .instance(instance("i-a1", "zone-a", &a))
            .instance(instance("i-b1", "zone-b", &bs[0]))
            .instance(instance("i-b2", "zone-b", &bs[1]))
            .instance(instance("i-b3", "zone-b", &bs[2]))
            .start()
            .await;
        send_ok(elbe.node("zone-a"), 200).await;
        assert_eq!(
            a.requests(),
            200,
            "zone-a's node sends all to its one instance"
        );
        assert!(bs.iter().all(|b| b.requests() == 0));

        send_ok(elbe.node("zone-b"), 200).await;
        assert_eq!(a.requests(), 200, "zone-b's node sends nothing to zone-a");
        let counts: Vec<usize> = bs.iter().map(Backend::requests).collect();
        assert_eq!(counts.iter().sum::<usize>(), 200, "{counts:?}");
        for (i, &count) in counts.iter().enumerate() {
            let s = share(count, 200);
            assert!(
                (0.20..=0.47).contains(&s),
                "zone-b instance {i} got {count} of zone-b's 200 ({s:.2}); all: {counts:?}"
            );
        }
        // Per node 50/50: the lone zone-a instance carries half of all traffic, as in ELB-SPEC §3's example.
        let total = a.requests() + counts.iter().sum::<usize>();
        assert_eq!(share(a.requests(), total), 0.5);
    })
    .await;
}

#[tokio::test]
async fn an_instance_in_a_zone_that_is_not_enabled_is_out_of_service_and_gets_nothing() {
    bounded(LIMIT, async {
        let a = Backend::start(Behaviour::Echo).await;
        let c = Backend::start(Behaviour::Echo).await;
        let c2 = Backend::start(Behaviour::Echo).await;
        // Cross-zone on: even "all zones" must mean all *enabled* zones.
        let elbe = ConfigBuilder::new()
            .zones(TWO_ZONES)
            .lb("cross_zone_load_balancing = true")
            .instance(instance("i-a1", "zone-a", &a))
            .instance(instance("i-c1", "zone-c", &c))
            .start()
            .await;
        // And one registered at run time.
        let reply = admin_send(
            &elbe,
            http::Method::POST,
            "/load_balancers/web/instances",
            &serde_json::json!({"instance_id": "i-c2", "zone": "zone-c", "address": c2.address.to_string()})
                .to_string(),
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);

        // A few health-check intervals pass (the instances answer TCP checks): the state must not change.
        tokio::time::sleep(Duration::from_millis(350)).await;
        for id in ["i-c1", "i-c2"] {
            let (state, reason, description) = instance_health(&elbe, id).unwrap();
            assert_eq!(
                (state.as_str(), reason.as_str(), description.as_str()),
                ("OutOfService", "ELB", ZONE_NOT_ENABLED),
                "{id}"
            );
        }
        assert_eq!(instance_health(&elbe, "i-a1").unwrap().0, "InService");

        send_ok(elbe.node("zone-a"), 30).await;
        send_ok(elbe.node("zone-b"), 30).await;
        assert_eq!(a.requests(), 60);
        assert_eq!(
            (c.requests(), c2.requests()),
            (0, 0),
            "instances in a zone that is not enabled get no traffic"
        );

        // /status over HTTP says the same.
        let status = admin_get(&elbe, "/status").await.json();
        let c1 = status["load_balancers"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance_id"] == "i-c1")
            .cloned()
            .unwrap();
        assert_eq!(c1["state"], "OutOfService");
        assert_eq!(c1["reason_code"], "ELB");
        assert_eq!(c1["description"], ZONE_NOT_ENABLED);
    })
    .await;
}

/// Zones a and b on their own node addresses, one Echo instance in each (i-a1, i-b1), all InService.
async fn two_zones_one_instance_each() -> (Backend, Backend, Elbe) {
    let a = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .zones(TWO_ZONES)
        .instance(instance("i-a1", "zone-a", &a))
        .instance(instance("i-b1", "zone-b", &b))
        .start()
        .await;
    (a, b, elbe)
}
