//! Availability zones through the API: which zones a load balancer may enable, the address its node takes in
//! each, and Enable/DisableAvailabilityZonesForLoadBalancer.
//!
//! Rule: a zone the API enables must be one of `[api] zones`; its node takes the lowest address of the zone's
//! `node_pool` that no running load balancer's node has (IPv4 pools skip their network and broadcast
//! addresses), so every load balancer can listen on port 80 and its DNS name answers with its own nodes. The
//! address is written in the load balancer's `zones` record, so it stays across restarts and reloads. A zone
//! enabled again keeps its node; disabling a zone that is not enabled is no error; the last zone cannot be
//! disabled (`InvalidConfigurationRequest`, as ELB).
//!
//! Trade-off: an address is free when no load balancer's node has it, whatever else may listen there; a
//! clash with another program shows as the bind failure the change is then refused with.

use std::net::IpAddr;

use super::apply::View;
use super::error::ApiError;
use super::query::Params;
use super::xml::Xml;
use crate::config;
use crate::control_plane::store::definitions::{ZoneNode, Zones};
use crate::control_plane::store::{Change, Record};

/// `LoadBalancerName` and `AvailabilityZones.member.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZonesRequest {
    pub load_balancer: String,
    pub zones: Vec<String>,
}

pub(crate) fn decode(params: &mut Params) -> Result<ZonesRequest, ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let zones = params.strings("AvailabilityZones")?;
    if zones.is_empty() {
        return Err(ApiError::missing_parameter("AvailabilityZones"));
    }
    Ok(ZonesRequest {
        load_balancer,
        zones,
    })
}

/// The nodes of `names` (each once, in order): a running zone keeps its node, a new one takes a free address.
pub(crate) fn nodes(
    view: &View<'_>,
    running: &[config::AvailabilityZone],
    names: &[String],
) -> Result<Vec<ZoneNode>, ApiError> {
    let mut taken: Vec<IpAddr> = view
        .config
        .load_balancers
        .iter()
        .flat_map(|lb| lb.availability_zones.iter().map(|zone| zone.node))
        .collect();
    let mut nodes: Vec<ZoneNode> = Vec::new();
    for name in names {
        if nodes.iter().any(|zone| zone.name == *name) {
            continue;
        }
        if let Some(zone) = running.iter().find(|zone| zone.name == *name) {
            nodes.push(ZoneNode {
                name: zone.name.clone(),
                node: zone.node,
            });
            continue;
        }
        let pool = view
            .config
            .api
            .zones
            .iter()
            .find(|zone| zone.name == *name)
            .ok_or_else(|| {
                let known: Vec<&str> = view.config.api.zones.iter().map(|z| z.name.as_str()).collect();
                ApiError::validation(format!(
                    "Invalid Availability Zone: {name} (the zones the API may enable are [api] zones: {known:?})"
                ))
            })?;
        let node = pool
            .node_pool
            .hosts()
            .find(|address| !taken.contains(address))
            .ok_or_else(|| {
                ApiError::invalid_configuration(format!(
                    "Zone {name} has no free node address left in its node_pool {}",
                    pool.node_pool
                ))
            })?;
        taken.push(node);
        nodes.push(ZoneNode {
            name: name.clone(),
            node,
        });
    }
    Ok(nodes)
}

/// The `zones` record of `load_balancer`.
pub(crate) fn record(load_balancer: &str, zones: Vec<ZoneNode>) -> Change {
    Change::Put(Record::Zones(Zones {
        load_balancer: load_balancer.to_owned(),
        zones,
    }))
}

/// EnableAvailabilityZonesForLoadBalancer: the running zones and the new ones.
pub(crate) fn plan_enable(
    view: &View<'_>,
    request: &ZonesRequest,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    let mut names: Vec<String> = lb
        .availability_zones
        .iter()
        .map(|z| z.name.clone())
        .collect();
    names.extend(request.zones.iter().cloned());
    let nodes = nodes(view, &lb.availability_zones, &names)?;
    if nodes.len() == lb.availability_zones.len() {
        return Ok(Vec::new());
    }
    Ok(vec![record(&lb.name, nodes)])
}

/// DisableAvailabilityZonesForLoadBalancer: the running zones but those named; never none.
pub(crate) fn plan_disable(
    view: &View<'_>,
    request: &ZonesRequest,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    let kept: Vec<ZoneNode> = lb
        .availability_zones
        .iter()
        .filter(|zone| !request.zones.contains(&zone.name))
        .map(|zone| ZoneNode {
            name: zone.name.clone(),
            node: zone.node,
        })
        .collect();
    if kept.is_empty() {
        return Err(ApiError::invalid_configuration(
            "Cannot disable all the availability zones of a load balancer: it must keep at least one",
        ));
    }
    if kept.len() == lb.availability_zones.len() {
        return Ok(Vec::new());
    }
    Ok(vec![record(&lb.name, kept)])
}

/// `AvailabilityZones`: the load balancer's zones now.
pub(crate) fn write(lb: &config::LoadBalancer, xml: &mut Xml) {
    let names: Vec<String> = lb
        .availability_zones
        .iter()
        .map(|z| z.name.clone())
        .collect();
    xml.strings("AvailabilityZones", &names);
}
