//! The health-check port (DESIGN.md "Health-check port"; issue 12 §4): an instance given as `IP:port` serves the
//! listener's `instance_port` at its own port, but a target on any other port is a separate health port, probed at
//! that port on the instance's address. An instance whose traffic port is open and whose health port is closed is
//! OutOfService and gets no traffic; one whose health port is open is InService.
//!
//! (A target on the listener's `instance_port` probing the instance's own port is what every other integration
//! test relies on: their instances are `127.0.0.1:<port>` checked with `TCP:80`, the listener's instance port.)
mod common;

use std::time::Duration;

use common::*;
use tokio::net::{TcpListener, TcpSocket};

const FAILED: &str =
    "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.";

#[tokio::test]
async fn a_separate_health_port_is_probed_on_the_instance_address_not_at_its_traffic_port() {
    bounded(Duration::from_secs(30), async {
        // Two instances on their own loopback addresses, both serving traffic.
        let dead = Backend::serve(
            TcpListener::bind("127.0.0.2:0").await.unwrap(),
            Behaviour::Echo,
        );
        let alive = Backend::serve(
            TcpListener::bind("127.0.0.3:0").await.unwrap(),
            Behaviour::Echo,
        );
        // The health port: open on the live instance's address; on the dead one's, bound but not listening, so
        // the port stays reserved and every probe is refused.
        let health = Backend::serve(
            TcpListener::bind("127.0.0.3:0").await.unwrap(),
            Behaviour::Echo,
        );
        let health_port = health.address.port();
        let closed = TcpSocket::new_v4().unwrap();
        closed
            .bind(format!("127.0.0.2:{health_port}").parse().unwrap())
            .unwrap();
        assert_ne!(health_port, 80, "the health port differs from the listener's instance_port");

        let mut builder = ConfigBuilder::new()
            .instance(instance("i-dead", "zone-a", &dead))
            .instance(instance("i-alive", "zone-a", &alive));
        builder.health_check = format!(
            "[load_balancer.health_check]\ntarget = \"TCP:{health_port}\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n"
        );
        let elbe = builder.start().await;

        wait_for_health(&elbe, "i-dead", "OutOfService", FAILED).await;
        wait_for_health(&elbe, "i-alive", "InService", "N/A").await;

        // Traffic still goes to the instances' own ports, and only to the one whose health port answers.
        for _ in 0..4 {
            assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
        }
        assert_eq!(alive.requests(), 4, "the InService instance took every request");
        assert_eq!(dead.requests(), 0, "the OutOfService instance took none");
        assert_eq!(health.requests(), 0, "probes are TCP connects, not requests");
    })
    .await;
}
