//! DescribeLoadBalancerAttributes and ModifyLoadBalancerAttributes (ELB-SPEC §3, §5, §13.3).
//!
//! Rule: ModifyLoadBalancerAttributes sets what it is given and leaves the rest: `CrossZoneLoadBalancing.Enabled`,
//! `ConnectionDraining.Enabled` and `.Timeout` (1–3600 s), `ConnectionSettings.IdleTimeout` (1–3600 s). They act
//! at once, by a snapshot swap: no listener is rebound and no connection dropped. The answer is the load balancer's
//! name and the attributes it set. `AccessLog` can only be left disabled: elbe writes access logs where the
//! configuration file's `access_log` says, not to S3, so enabling it is `InvalidConfigurationRequest`.
//!
//! Trade-off: the attributes set are kept as such (the rest stay the file's), so a reload that changes an
//! attribute the API never set applies it.

use super::apply::View;
use super::error::ApiError;
use super::query::Params;
use super::xml::Xml;
use crate::config;
use crate::control_plane::store::definitions::Attributes;
use crate::control_plane::store::{Change, Key, Record};

/// ModifyLoadBalancerAttributes' parameters: the attributes given (`load_balancer` names the load balancer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModifyAttributes {
    pub given: Attributes,
    /// `AccessLog.Enabled=false` was given (the one AccessLog setting the API takes).
    pub access_log_off: bool,
}

pub(crate) fn decode_modify(params: &mut Params) -> Result<ModifyAttributes, ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let mut attributes = params.structure("LoadBalancerAttributes");
    if attributes.is_empty() {
        return Err(ApiError::missing_parameter("LoadBalancerAttributes"));
    }
    let mut cross_zone = attributes.structure("CrossZoneLoadBalancing");
    let cross_zone_load_balancing = cross_zone.boolean("Enabled")?;
    cross_zone.finish()?;
    let mut draining = attributes.structure("ConnectionDraining");
    let connection_draining = draining.boolean("Enabled")?;
    let connection_draining_timeout = draining.number("Timeout", 1..=3600)?;
    draining.finish()?;
    let mut settings = attributes.structure("ConnectionSettings");
    let idle_timeout = settings.number("IdleTimeout", 1..=3600)?;
    settings.finish()?;
    let mut access_log = attributes.structure("AccessLog");
    let access_log_enabled = access_log.boolean("Enabled")?;
    if access_log_enabled == Some(true) {
        return Err(ApiError::invalid_configuration(
            "elbe writes access logs where the configuration file's access_log says, not to S3: \
             AccessLog cannot be enabled through the API",
        ));
    }
    for name in ["S3BucketName", "S3BucketPrefix", "EmitInterval"] {
        access_log.optional(name);
    }
    access_log.finish()?;
    attributes.finish()?;
    Ok(ModifyAttributes {
        given: Attributes {
            load_balancer,
            cross_zone_load_balancing,
            connection_draining,
            connection_draining_timeout,
            idle_timeout,
        },
        access_log_off: access_log_enabled == Some(false),
    })
}

/// The attributes record with the given ones laid on those the API set before.
pub(crate) fn plan_modify(
    view: &View<'_>,
    request: &ModifyAttributes,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.given.load_balancer)?;
    if request.access_log_off && lb.access_log.is_some() {
        return Err(ApiError::invalid_configuration(format!(
            "Load balancer {}'s access log is written where the configuration file's access_log says: \
             the API cannot disable it",
            lb.name
        )));
    }
    let key = Key::Attributes {
        load_balancer: lb.name.clone(),
    };
    let mut record = match view.records.get(&key).map(|versioned| &versioned.record) {
        Some(Record::Attributes(held)) => held.clone(),
        _ => Attributes {
            load_balancer: lb.name.clone(),
            ..Attributes::default()
        },
    };
    let given = &request.given;
    record.cross_zone_load_balancing = given
        .cross_zone_load_balancing
        .or(record.cross_zone_load_balancing);
    record.connection_draining = given.connection_draining.or(record.connection_draining);
    record.connection_draining_timeout = given
        .connection_draining_timeout
        .or(record.connection_draining_timeout);
    record.idle_timeout = given.idle_timeout.or(record.idle_timeout);
    Ok(vec![Change::Put(Record::Attributes(record))])
}

/// ModifyLoadBalancerAttributes' answer: the name and the attributes given, as they are now.
pub(crate) fn write_modified(lb: &config::LoadBalancer, request: &ModifyAttributes, xml: &mut Xml) {
    let given = &request.given;
    xml.text("LoadBalancerName", &lb.name);
    xml.element("LoadBalancerAttributes", |xml| {
        if request.access_log_off {
            xml.element("AccessLog", |xml| xml.text("Enabled", false));
        }
        if given.cross_zone_load_balancing.is_some() {
            cross_zone(lb, xml);
        }
        if given.connection_draining.is_some() || given.connection_draining_timeout.is_some() {
            draining(lb, xml);
        }
        if given.idle_timeout.is_some() {
            settings(lb, xml);
        }
    });
}

/// The `DescribeLoadBalancerAttributesResult` members (ELB-SPEC §13.3), as they run.
pub(crate) fn write(lb: &config::LoadBalancer, xml: &mut Xml) {
    xml.element("LoadBalancerAttributes", |xml| {
        cross_zone(lb, xml);
        xml.element("AccessLog", |xml| {
            xml.text("Enabled", lb.access_log.is_some());
            if lb.access_log.is_some() {
                // elbe writes each line as it happens; ELB's shortest interval is the honest one to report.
                xml.text("EmitInterval", 5);
            }
        });
        draining(lb, xml);
        settings(lb, xml);
    });
}

fn cross_zone(lb: &config::LoadBalancer, xml: &mut Xml) {
    xml.element("CrossZoneLoadBalancing", |xml| {
        xml.text("Enabled", lb.cross_zone_load_balancing);
    });
}

fn draining(lb: &config::LoadBalancer, xml: &mut Xml) {
    xml.element("ConnectionDraining", |xml| {
        xml.text("Enabled", lb.connection_draining.enabled);
        xml.text("Timeout", whole_seconds(lb.connection_draining.timeout));
    });
}

fn settings(lb: &config::LoadBalancer, xml: &mut Xml) {
    xml.element("ConnectionSettings", |xml| {
        xml.text("IdleTimeout", whole_seconds(lb.idle_timeout));
    });
}

/// A duration in the API's whole seconds, rounded up (so a 100 ms test interval is not described as 0).
pub(crate) fn whole_seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
