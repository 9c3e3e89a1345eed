//! Health over real sockets: passive failure detection (elbe's extension) against strict ELB behaviour.
mod common;

use common::*;

/// Two instances, active checks too slow to matter (60 s), so only traffic can find the dead one.
async fn two_instances_one_dies(passive: bool) -> (Elbe, Backend, Vec<http::StatusCode>) {
    let alive = Backend::start(Behaviour::Echo).await;
    let doomed = Backend::start(Behaviour::Echo).await;
    let mut builder = ConfigBuilder::new()
        .instance(instance("i-alive", "zone-a", &alive))
        .instance(instance("i-doomed", "zone-a", &doomed));
    if !passive {
        builder = builder.lb("passive_health_checks = false");
    }
    builder.health_check =
        "[load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"60s\"\ntimeout = \"1s\"\n"
            .into();
    let elbe = builder.start().await;
    drop(doomed);
    tokio::task::yield_now().await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(get(elbe.node("zone-a"), "/").await.status);
    }
    (elbe, alive, statuses)
}

fn state_of(elbe: &Elbe, id: &str) -> (&'static str, &'static str) {
    let status = elbe.server().status();
    let instance = status.load_balancers[0]
        .instances
        .iter()
        .find(|i| i.instance_id == id)
        .expect("instance listed");
    (instance.state, instance.description)
}

#[tokio::test]
async fn passive_checks_retry_elsewhere_and_take_a_dead_instance_out_at_once() {
    let (elbe, alive, statuses) = two_instances_one_dies(true).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request may fail: {statuses:?}"
    );
    assert_eq!(alive.requests(), 20);
    assert_eq!(
        state_of(&elbe, "i-doomed"),
        (
            "OutOfService",
            "Instance has failed at least the UnhealthyThreshold number of health checks consecutively."
        )
    );
    assert_eq!(state_of(&elbe, "i-alive").0, "InService");
}

#[tokio::test]
async fn strict_elb_mode_keeps_routing_to_the_dead_instance_until_active_checks_notice() {
    let (elbe, alive, statuses) = two_instances_one_dies(false).await;
    let failed = statuses.iter().filter(|s| s.as_u16() == 503).count();
    assert!(
        failed > 0,
        "ELB answers 503 for requests sent to the dead instance: {statuses:?}"
    );
    assert_eq!(failed + alive.requests(), 20);
    assert_eq!(
        state_of(&elbe, "i-doomed").0,
        "InService",
        "only active checks change state in strict mode"
    );
}

#[tokio::test]
async fn a_passively_removed_instance_returns_after_its_next_passing_check() {
    let backend = Backend::start(Behaviour::Echo).await;
    let address = backend.address;
    let mut builder = ConfigBuilder::new().instance(instance("i-1", "zone-a", &backend));
    builder.health_check =
        "[load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 5\n".into();
    let elbe = builder.start().await;
    drop(backend);
    tokio::task::yield_now().await;
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 503);
    assert_eq!(state_of(&elbe, "i-1").0, "OutOfService");
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let revived = Backend::serve(listener, Behaviour::Echo);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while state_of(&elbe, "i-1").0 != "InService" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
    assert_eq!(revived.requests(), 1);
}
