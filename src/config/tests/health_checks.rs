//! Health-check rules (ELB-SPEC §2.1): target syntax, timeout shorter than interval, thresholds of at least 1.

use super::{fails, ms, ok, MINIMAL};
use crate::config::HealthTarget;

#[test]
fn health_check_rules() {
    let hc = |body: &str| format!("{MINIMAL}[load_balancer.health_check]\n{body}\n");
    let key = "load_balancer[0].health_check";
    fails(
        &hc("interval = \"5s\"\ntimeout = \"5s\""),
        &format!("{key}.timeout"),
        "must be shorter than interval 5s",
    );
    fails(
        &hc("interval = \"3s\""),
        &format!("{key}.timeout"),
        "timeout 5s (the default) must be shorter than interval 3s",
    );
    fails(
        &hc("healthy_threshold = 0"),
        &format!("{key}.healthy_threshold"),
        "at least 1",
    );
    fails(
        &hc("unhealthy_threshold = 0"),
        &format!("{key}.unhealthy_threshold"),
        "at least 1",
    );
    fails(
        &hc("interval = \"0s\""),
        &format!("{key}.interval"),
        "greater than zero",
    );
    fails(
        &hc("target = \"HTTP:80\""),
        &format!("{key}.target"),
        "needs a path",
    );
    fails(
        &hc("target = \"TCP:80\"\ncolour = 1"),
        &format!("{key}.colour"),
        "unknown field",
    );
    let config = ok(&hc("target = \"HTTPS:8443/ping\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1"));
    let check = &config.load_balancers[0].health_check;
    assert_eq!(
        check.target,
        HealthTarget::Https {
            port: 8443,
            path: "/ping".into()
        }
    );
    assert_eq!(
        (
            check.interval,
            check.timeout,
            check.healthy_threshold,
            check.unhealthy_threshold
        ),
        (ms(100), ms(50), 1, 1)
    );
}
