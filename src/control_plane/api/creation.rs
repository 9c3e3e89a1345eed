//! CreateLoadBalancer and DeleteLoadBalancer (ELB-SPEC §13.3).
//!
//! Rule: CreateLoadBalancer takes a name (ELB's rules, ELB-SPEC §4), at least one listener (`api/listeners`), at
//! least one zone of `[api] zones` (EC2-Classic: `Subnets` and `SecurityGroups` are refused, elbe has no VPC),
//! a `Scheme` and tags. It writes, in one batch, the load balancer, its zones with their nodes (`api/zones`),
//! its listeners, ELB's default health check (`TCP:<first instance port>`, 30 s, 5 s, 2 and 10) and its tags;
//! once the call is answered its nodes listen, its DNS name answers and what is registered is checked. The same
//! call again (same listeners, same zones) answers the same DNS name and changes nothing; a different one is
//! `DuplicateLoadBalancerName`. DeleteLoadBalancer never fails: it forgets every record of the load balancer
//! and, for one the configuration file declares, leaves a tombstone; its listeners stop accepting at once, and
//! its requests in flight drain as a reload's removal drains them: by its `ConnectionDraining` (on: they finish
//! within its timeout; off: they are cut with ELB's 504, as deregistration cuts them).
//!
//! Trade-off: creating a load balancer of the file's name after deleting it makes a new one from the API's
//! defaults: the file's listeners and instances do not come back until `elbe state reset`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::apply::View;
use super::error::ApiError;
use super::listeners::{self, ListenerRequest};
use super::query::Params;
use super::tags::{self, TagList};
use crate::control_plane::store::definitions::{
    HealthCheckRecord, LoadBalancerRecord, LoadBalancerState,
};
use crate::control_plane::store::{Change, Record};

/// CreateLoadBalancer's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateLoadBalancer {
    pub name: String,
    pub listeners: Vec<ListenerRequest>,
    pub zones: Vec<String>,
    pub scheme: String,
    pub tags: TagList,
}

pub(crate) fn decode_create(params: &mut Params) -> Result<CreateLoadBalancer, ApiError> {
    let name = params.required("LoadBalancerName")?;
    crate::config::check_load_balancer_name(&name).map_err(ApiError::validation)?;
    let listeners = listeners::decode_list(params, "Listeners")?;
    let zones = params.strings("AvailabilityZones")?;
    if !params.strings("Subnets")?.is_empty() {
        return Err(ApiError::validation(
            "elbe runs EC2-Classic load balancers: give AvailabilityZones, not Subnets",
        ));
    }
    if !params.strings("SecurityGroups")?.is_empty() {
        return Err(ApiError::elb(
            "InvalidSecurityGroup",
            "elbe runs EC2-Classic load balancers, which take no SecurityGroups",
        ));
    }
    if zones.is_empty() {
        return Err(ApiError::validation(
            "Either AvailabilityZones or SubnetIds must be specified",
        ));
    }
    let scheme = params
        .optional("Scheme")
        .unwrap_or_else(|| "internet-facing".to_owned());
    if scheme != "internet-facing" && scheme != "internal" {
        return Err(ApiError::elb(
            "InvalidScheme",
            format!("Scheme {scheme:?} is not internet-facing or internal"),
        ));
    }
    let tags = tags::decode_tags(params, "Tags", false)?;
    Ok(CreateLoadBalancer {
        name,
        listeners,
        zones,
        scheme,
        tags,
    })
}

/// CreateLoadBalancer (module documentation).
pub(crate) fn plan_create(
    view: &View<'_>,
    request: &CreateLoadBalancer,
) -> Result<Vec<Change>, ApiError> {
    let name = &request.name;
    if let Some(lb) = view
        .config
        .load_balancers
        .iter()
        .find(|lb| lb.name == *name)
    {
        let same_listeners =
            listeners::plan_listeners(view, name, &lb.listeners, &request.listeners)
                .is_ok_and(|changes| changes.is_empty())
                && lb.listeners.len() == request.listeners.len();
        let mut zones: Vec<&str> = lb
            .availability_zones
            .iter()
            .map(|z| z.name.as_str())
            .collect();
        let mut asked: Vec<&str> = request.zones.iter().map(String::as_str).collect();
        zones.sort_unstable();
        asked.sort_unstable();
        asked.dedup();
        if same_listeners && zones == asked {
            return Ok(Vec::new());
        }
        return Err(ApiError::elb(
            "DuplicateLoadBalancerName",
            format!("Load Balancer named '{name}' already exists and it is configured with different parameters."),
        ));
    }
    let nodes = super::zones::nodes(view, &[], &request.zones)?;
    let mut listener_changes = listeners::plan_listeners(view, name, &[], &request.listeners)?;
    let first_port = request.listeners[0].definition.instance_port;
    let created_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    // Whatever records were left under this name (registrations for a load balancer the file dropped) go.
    let mut changes: Vec<Change> = view
        .records
        .keys_of(name)
        .into_iter()
        .map(Change::Delete)
        .collect();
    changes.push(Change::Put(Record::LoadBalancer(LoadBalancerRecord {
        name: name.clone(),
        state: LoadBalancerState::Created {
            created_ms,
            scheme: request.scheme.clone(),
        },
    })));
    changes.push(super::zones::record(name, nodes));
    changes.append(&mut listener_changes);
    changes.push(Change::Put(Record::HealthCheck(HealthCheckRecord {
        load_balancer: name.clone(),
        target: format!("TCP:{first_port}"),
        interval: 30,
        timeout: 5,
        unhealthy_threshold: 2,
        healthy_threshold: 10,
    })));
    if !request.tags.is_empty() {
        changes.push(tags::record(name, request.tags.clone()));
    }
    Ok(changes)
}

/// DeleteLoadBalancer: every record forgotten, a tombstone for the file's (module documentation).
pub(crate) fn plan_delete(view: &View<'_>, name: &str) -> Result<Vec<Change>, ApiError> {
    let Some(lb) = view.running(name) else {
        return Ok(Vec::new()); // never there, or gone already (its tombstone stays)
    };
    let name = lb.name.as_str();
    let mut changes: Vec<Change> = view
        .records
        .keys_of(name)
        .into_iter()
        .map(Change::Delete)
        .collect();
    if view.in_file(name) {
        changes.push(Change::Put(Record::LoadBalancer(LoadBalancerRecord {
            name: name.to_owned(),
            state: LoadBalancerState::Deleted,
        })));
    }
    Ok(changes)
}
