//! A load balancer's `[load_balancer.health_check]`: target, interval, timeout and thresholds.
//!
//! Rule: ELB-SPEC §2.1. Missing fields take ELB's defaults after CreateLoadBalancer (`TCP:<first listener's
//! instance port>`, 30 s, 5 s, 10, 2); the timeout must be shorter than the interval, as ELB requires, and the
//! error says which of the two was a default, since a short interval alone trips over the 5 s default timeout.
//!
//! Trade-off: ELB's ranges (interval 5–300 s, thresholds 2–10) are not enforced, so tests can probe every
//! 100 ms and mark an instance healthy after one pass (DESIGN.md); only values that cannot work (0) are refused.

use crate::config::defaults;
use crate::config::error::ConfigError;
use crate::config::health_target::HealthTarget;
use crate::config::model::HealthCheck;
use crate::config::raw;
use crate::config::validate::context::Cx;

impl Cx<'_> {
    /// ELB's `HealthCheck` (ELB-SPEC §2.1): each field defaults on its own; `default_port` is the first
    /// listener's instance port, ELB's default target `TCP:<port>`.
    pub(super) fn health_check(
        &self,
        key: &str,
        raw: Option<raw::HealthCheck>,
        default_port: u16,
    ) -> Result<HealthCheck, ConfigError> {
        let raw = raw.unwrap_or_default();
        let target = match &raw.target {
            Some(text) => self.value(&format!("{key}.target"), text)?,
            None => HealthTarget::Tcp { port: default_port },
        };
        let check = HealthCheck {
            target,
            interval: raw
                .interval
                .map_or(defaults::HEALTH_CHECK_INTERVAL, |v| v.0),
            timeout: raw.timeout.map_or(defaults::HEALTH_CHECK_TIMEOUT, |v| v.0),
            healthy_threshold: raw.healthy_threshold.unwrap_or(defaults::HEALTHY_THRESHOLD),
            unhealthy_threshold: raw
                .unhealthy_threshold
                .unwrap_or(defaults::UNHEALTHY_THRESHOLD),
        };
        if check.timeout >= check.interval {
            let note = |given: bool| if given { "" } else { " (the default)" };
            return Err(self.err(
                format!("{key}.timeout"),
                format!(
                    "timeout {:?}{} must be shorter than interval {:?}{}",
                    check.timeout,
                    note(raw.timeout.is_some()),
                    check.interval,
                    note(raw.interval.is_some())
                ),
            ));
        }
        for (name, value) in [
            ("healthy_threshold", check.healthy_threshold),
            ("unhealthy_threshold", check.unhealthy_threshold),
        ] {
            if value == 0 {
                return Err(self.err(format!("{key}.{name}"), "must be at least 1"));
            }
        }
        Ok(check)
    }
}
