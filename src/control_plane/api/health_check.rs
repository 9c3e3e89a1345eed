//! ConfigureHealthCheck (ELB-SPEC §2.1, §13.3).
//!
//! Rule: every field is required, in ELB's ranges: `Interval` 5–300 s, `Timeout` 2–60 s and shorter than the
//! interval, `UnhealthyThreshold` and `HealthyThreshold` 2–10, `Target` `PROTOCOL:PORT[/path]` (HTTP/HTTPS with a
//! path, TCP/SSL without). The answer echoes the check. A new check restarts the load balancer's checks: every
//! instance is probed by the new target at once, keeping its state until the thresholds say otherwise.
//!
//! Trade-off: the file may go below these ranges (tests probe every 100 ms); the API may not, as ELB.

use super::apply::View;
use super::error::ApiError;
use super::query::Params;
use super::xml::Xml;
use crate::config::HealthTarget;
use crate::control_plane::store::definitions::HealthCheckRecord;
use crate::control_plane::store::{Change, Record};

/// ConfigureHealthCheck's parameters: the load balancer and the whole check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigureHealthCheck {
    pub check: HealthCheckRecord,
}

pub(crate) fn decode(params: &mut Params) -> Result<ConfigureHealthCheck, ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let mut check = params.structure("HealthCheck");
    if check.is_empty() {
        return Err(ApiError::missing_parameter("HealthCheck"));
    }
    let target = check.required("Target")?;
    target
        .parse::<HealthTarget>()
        .map_err(|why| ApiError::validation(format!("HealthCheck.Target {target:?}: {why}")))?;
    let mut number = |name: &str, range| {
        check
            .number(name, range)?
            .ok_or_else(|| ApiError::missing_parameter(&format!("HealthCheck.{name}")))
    };
    let interval = number("Interval", 5..=300)?;
    let timeout = number("Timeout", 2..=60)?;
    let unhealthy_threshold = number("UnhealthyThreshold", 2..=10)?;
    let healthy_threshold = number("HealthyThreshold", 2..=10)?;
    check.finish()?;
    if timeout >= interval {
        return Err(ApiError::validation(format!(
            "HealthCheck.Timeout ({timeout}) must be less than HealthCheck.Interval ({interval})"
        )));
    }
    Ok(ConfigureHealthCheck {
        check: HealthCheckRecord {
            load_balancer,
            target,
            interval,
            timeout,
            unhealthy_threshold,
            healthy_threshold,
        },
    })
}

/// The check's record; no change when it is the check the load balancer has.
pub(crate) fn plan(
    view: &View<'_>,
    request: &ConfigureHealthCheck,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.check.load_balancer)?;
    let mut record = request.check.clone();
    record.load_balancer = lb.name.clone();
    if crate::control_plane::store::overlay::health_check(&record).as_ref()
        == Some(&lb.health_check)
    {
        return Ok(Vec::new());
    }
    Ok(vec![Change::Put(Record::HealthCheck(record))])
}

/// `HealthCheck`, as given.
pub(crate) fn write(check: &HealthCheckRecord, xml: &mut Xml) {
    xml.element("HealthCheck", |xml| {
        xml.text("Target", &check.target);
        xml.text("Interval", check.interval);
        xml.text("Timeout", check.timeout);
        xml.text("UnhealthyThreshold", check.unhealthy_threshold);
        xml.text("HealthyThreshold", check.healthy_threshold);
    });
}
