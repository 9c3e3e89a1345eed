//! RegisterInstancesWithLoadBalancer, DeregisterInstancesFromLoadBalancer and DescribeInstanceHealth (ELB-SPEC
//! §13.3, states of §2.2).
//!
//! Rule: an `InstanceId` means what the `[[instance]]` catalogue says (the EC2 stand-in: zone and address); an
//! id in no catalogue is `InvalidInstance` ("Could not find EC2 instance …"), as is deregistering an instance the
//! load balancer does not have. An instance registered from the file's `[[load_balancer.instance]]` is known to
//! its load balancer too. Every id is checked before anything changes, so a call with one bad id changes
//! nothing, and the ids of one call are one write (`Control::register_all`): all of them or none. Registering a
//! registered instance again changes nothing (it keeps its health).
//! The results are the instances registered afterwards; an instance draining after its deregistration is no
//! longer one of them, while DescribeInstanceHealth still reports it (`InService`, "Instance deregistration
//! currently in progress.", ELB-SPEC §2.2).
//!
//! In cluster mode DescribeInstanceHealth reports the worst state among the cluster's live members
//! (`control/members`), naming the member when the state is another member's view.
//!
//! Trade-off: registration goes through `Control::register`/`deregister`, the same path as the admin JSON
//! endpoints and the harness, so there is one way to change state (and the state store makes it durable there).

use std::sync::Arc;

use super::action::Instances;
use super::error::ApiError;
use super::load_balancers::{registered, Described};
use super::xml::Xml;
use crate::config;
use crate::control_plane::control::status::InstanceStatus;
use crate::control_plane::control::{Control, ControlError, InstanceHealth};

/// The load balancer `name` among `all`; ELB's `LoadBalancerNotFound` otherwise.
pub(crate) fn find<'a>(all: &'a [Described], name: &str) -> Result<&'a Described, ApiError> {
    all.iter()
        .find(|(lb, _)| lb.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ApiError::load_balancer_not_found(name))
}

/// Registers every id (each from the catalogue, or already registered from the file); writes the instances
/// registered afterwards.
pub(crate) async fn register(
    control: &Arc<Control>,
    catalogue: &[config::Instance],
    request: &Instances,
    xml: &mut Xml,
) -> Result<(), ApiError> {
    let described = control.described();
    let (lb, status) = find(&described, &request.load_balancer)?;
    let now: Vec<String> = registered(status);
    let mut new = Vec::new();
    for id in &request.instances {
        match catalogue.iter().find(|i| i.id == *id) {
            Some(instance) => new.push(instance.clone()),
            None if now.contains(id) => {} // registered from the file: nothing to change
            None => return Err(ApiError::unknown_instance(id)),
        }
    }
    let ids: Vec<String> = new.iter().map(|i| i.id.clone()).collect();
    if !new.is_empty() {
        control
            .register_all(&lb.name, new)
            .await
            .map_err(|error| control_error(error, &lb.name, &ids.join(", ")))?;
        tracing::info!(load_balancer = %lb.name, instances = ?ids, "instances registered through the ELB API");
    }
    instance_list(control, &lb.name, xml)
}

/// Deregisters every id, each of which must be registered; writes the instances still registered.
pub(crate) async fn deregister(
    control: &Arc<Control>,
    request: &Instances,
    xml: &mut Xml,
) -> Result<(), ApiError> {
    let described = control.described();
    let (lb, status) = find(&described, &request.load_balancer)?;
    let now = registered(status);
    if let Some(id) = request.instances.iter().find(|id| !now.contains(id)) {
        return Err(ApiError::not_registered(id, &lb.name));
    }
    control
        .deregister_all(&lb.name, &request.instances)
        .await
        .map_err(|error| control_error(error, &lb.name, &request.instances.join(", ")))?;
    tracing::info!(load_balancer = %lb.name, instances = ?request.instances, "instances deregistered through the ELB API");
    instance_list(control, &lb.name, xml)
}

/// `Instances`: the load balancer's registered instances now.
fn instance_list(control: &Control, load_balancer: &str, xml: &mut Xml) -> Result<(), ApiError> {
    let described = control.described();
    let (_, status) = find(&described, load_balancer)?;
    xml.list("Instances", &registered(status), |xml, id| {
        xml.text("InstanceId", id)
    });
    Ok(())
}

/// `InstanceStates`: every registered instance, or the ones asked for (an id of the catalogue that is not
/// registered is reported as such; an id of no instance is `InvalidInstance`).
pub(crate) fn describe_health(
    all: &[Described],
    catalogue: &[config::Instance],
    request: &Instances,
    xml: &mut Xml,
) -> Result<(), ApiError> {
    let (_, status) = find(all, &request.load_balancer)?;
    let mut states: Vec<(String, &'static str, &'static str, String)> = Vec::new();
    if request.instances.is_empty() {
        for i in &status.instances {
            states.push((
                i.instance_id.clone(),
                i.state,
                i.reason_code,
                description(i),
            ));
        }
    } else {
        for id in &request.instances {
            match status.instances.iter().find(|i| i.instance_id == *id) {
                Some(i) => states.push((id.clone(), i.state, i.reason_code, description(i))),
                None if catalogue.iter().any(|i| i.id == *id) => {
                    let h = InstanceHealth::NOT_REGISTERED;
                    states.push((id.clone(), h.state, h.reason_code, h.description.into()));
                }
                None => return Err(ApiError::unknown_instance(id)),
            }
        }
    }
    xml.list(
        "InstanceStates",
        &states,
        |xml, (id, state, reason, description)| {
            xml.text("InstanceId", id);
            xml.text("State", state);
            xml.text("ReasonCode", reason);
            xml.text("Description", description);
        },
    );
    Ok(())
}

/// The description DescribeInstanceHealth gives: ELB's, naming the member whose view it is when that is another
/// member of the cluster's (issue 16 item 4: "Instance has failed at least the UnhealthyThreshold number of
/// health checks consecutively (node lb-1b).").
fn description(instance: &InstanceStatus) -> String {
    match &instance.member {
        Some(member) => format!(
            "{} (node {member}).",
            instance.description.trim_end_matches('.')
        ),
        None => instance.description.to_owned(),
    }
}

/// A control-plane refusal in ELB's terms: the load balancer went away meanwhile, a `host:port` instance does not
/// resolve (the catalogue's address is wrong: `InvalidInstance`, with the resolver's reason), or the state store
/// could not keep the change (`ServiceUnavailable`: nothing changed).
fn control_error(error: ControlError, load_balancer: &str, id: &str) -> ApiError {
    match error {
        ControlError::LoadBalancerNotFound(_) => {
            ApiError::load_balancer_not_found(load_balancer).caused_by(error)
        }
        ControlError::Resolve(_) => {
            ApiError::invalid_instance_address(id, &error.to_string()).caused_by(error)
        }
        ControlError::Interrupted => {
            ApiError::service_unavailable(error.to_string()).caused_by(error)
        }
        ControlError::Store(_) => {
            ApiError::service_unavailable(format!("The change to {id} could not be kept: {error}"))
                .caused_by(error)
        }
    }
}
