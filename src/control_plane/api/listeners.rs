//! ELB's `Listener` as the API takes it (CreateLoadBalancer, CreateLoadBalancerListeners), and
//! Create/DeleteLoadBalancerListeners.
//!
//! Rule: ELB-SPEC §1 and the API's ranges: `LoadBalancerPort` 25, 80, 443, 465, 587 or 1024–65535;
//! `InstancePort` 1–65535; `InstanceProtocol` defaults to HTTP behind HTTP/HTTPS and TCP behind TCP/SSL, and must
//! be of the same layer; HTTPS and SSL listeners name an `SSLCertificateId` of `[api] certificates`
//! (`CertificateNotFound` otherwise), the others none; listeners sharing an instance port agree on TLS. A
//! listener created again on its port with the same settings is no change; with other settings it is
//! `DuplicateListener`. Deleting a port that has no listener is no error, as in ELB.
//!
//! Trade-off: a deleted listener leaves a tombstone record even when only the API had made it, so the file's
//! listener of that port (if a reload adds one) stays deleted too: what the API did wins.

use super::apply::View;
use super::error::ApiError;
use super::query::Params;
use crate::config::{self, Protocol};
use crate::control_plane::store::definitions::{ListenerDefinition, ListenerRecord, ListenerState};
use crate::control_plane::store::{Change, Key, Record};

/// The most listeners a load balancer has (ELB's quota, ELB-SPEC §13.3).
const MAX_LISTENERS: usize = 100;

/// One `Listeners.member.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerRequest {
    pub load_balancer_port: u16,
    pub definition: ListenerDefinition,
}

/// `LoadBalancerName` and `Listeners.member.N` (CreateLoadBalancerListeners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateListeners {
    pub load_balancer: String,
    pub listeners: Vec<ListenerRequest>,
}

/// `LoadBalancerName` and `LoadBalancerPorts.member.N` (DeleteLoadBalancerListeners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeleteListeners {
    pub load_balancer: String,
    pub ports: Vec<u16>,
}

/// Reads the list `name` of listeners (at least one).
pub(crate) fn decode_list(
    params: &mut Params,
    name: &str,
) -> Result<Vec<ListenerRequest>, ApiError> {
    let mut listeners = Vec::new();
    for mut member in params.members(name)? {
        listeners.push(decode_one(&mut member)?);
        member.finish()?;
    }
    if listeners.is_empty() {
        return Err(ApiError::missing_parameter(name));
    }
    Ok(listeners)
}

fn decode_one(member: &mut Params) -> Result<ListenerRequest, ApiError> {
    let front = protocol(&member.required("Protocol")?)?;
    let load_balancer_port = member
        .number("LoadBalancerPort", 1..=65535)?
        .ok_or_else(|| ApiError::missing_parameter("LoadBalancerPort"))?
        as u16;
    if !(load_balancer_port >= 1024 || [25, 80, 443, 465, 587].contains(&load_balancer_port)) {
        return Err(ApiError::validation(format!(
            "LoadBalancerPort {load_balancer_port} is not allowed: use 25, 80, 443, 465, 587 or 1024-65535"
        )));
    }
    let instance_protocol = match member.optional("InstanceProtocol") {
        Some(text) => protocol(&text)?,
        None if front.is_http() => Protocol::Http,
        None => Protocol::Tcp,
    };
    let instance_port = member
        .number("InstancePort", 1..=65535)?
        .ok_or_else(|| ApiError::missing_parameter("InstancePort"))? as u16;
    let certificate_id = member
        .optional("SSLCertificateId")
        .filter(|id| !id.is_empty());
    Ok(ListenerRequest {
        load_balancer_port,
        definition: ListenerDefinition {
            protocol: front,
            instance_protocol,
            instance_port,
            certificate_id,
        },
    })
}

fn protocol(text: &str) -> Result<Protocol, ApiError> {
    text.parse().map_err(|why: String| {
        ApiError::elb("UnsupportedProtocol", format!("Protocol {text:?}: {why}"))
    })
}

pub(crate) fn decode_create(params: &mut Params) -> Result<CreateListeners, ApiError> {
    Ok(CreateListeners {
        load_balancer: params.required("LoadBalancerName")?,
        listeners: decode_list(params, "Listeners")?,
    })
}

pub(crate) fn decode_delete(params: &mut Params) -> Result<DeleteListeners, ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let mut ports = Vec::new();
    for text in params.strings("LoadBalancerPorts")? {
        let port = text
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| {
                ApiError::validation(format!("LoadBalancerPorts: {text:?} is not a port"))
            })?;
        ports.push(port);
    }
    if ports.is_empty() {
        return Err(ApiError::missing_parameter("LoadBalancerPorts"));
    }
    Ok(DeleteListeners {
        load_balancer,
        ports,
    })
}

/// The records for `requested` listeners beside the `existing` ones: none for a listener that is there
/// already with the same settings; ELB's errors for the rest (module documentation).
pub(crate) fn plan_listeners(
    view: &View<'_>,
    load_balancer: &str,
    existing: &[config::Listener],
    requested: &[ListenerRequest],
) -> Result<Vec<Change>, ApiError> {
    let mut changes = Vec::new();
    let mut all: Vec<(u16, Protocol, u16)> = existing
        .iter()
        .map(|l| (l.load_balancer_port, l.instance_protocol, l.instance_port))
        .collect();
    for (n, request) in requested.iter().enumerate() {
        check_listener(view, request)?;
        let port = request.load_balancer_port;
        if requested[..n].iter().any(|r| r.load_balancer_port == port) {
            return Err(ApiError::elb(
                "DuplicateListener",
                format!("LoadBalancerPort {port} is given twice"),
            ));
        }
        if let Some(listener) = existing.iter().find(|l| l.load_balancer_port == port) {
            if same(view, listener, &request.definition) {
                continue;
            }
            return Err(ApiError::elb(
                "DuplicateListener",
                format!(
                    "A listener already exists for {load_balancer} with LoadBalancerPort {port}, but with a \
                     different InstancePort, Protocol, or SSLCertificateId"
                ),
            ));
        }
        let definition = &request.definition;
        if let Some((other, protocol, _)) = all.iter().find(|(_, protocol, instance_port)| {
            *instance_port == definition.instance_port
                && protocol.is_secure() != definition.instance_protocol.is_secure()
        }) {
            return Err(ApiError::invalid_configuration(format!(
                "The listener on port {other} sends {protocol} to instance port {}; listeners sharing an \
                 instance port must all speak TLS to it (HTTPS/SSL) or all not (HTTP/TCP)",
                definition.instance_port
            )));
        }
        all.push((port, definition.instance_protocol, definition.instance_port));
        changes.push(Change::Put(Record::Listener(ListenerRecord {
            load_balancer: load_balancer.to_owned(),
            load_balancer_port: port,
            state: ListenerState::Defined(definition.clone()),
        })));
    }
    if all.len() > MAX_LISTENERS {
        return Err(ApiError::invalid_configuration(format!(
            "A load balancer has at most {MAX_LISTENERS} listeners"
        )));
    }
    Ok(changes)
}

/// One listener on its own: layers pair, certificates where TLS is terminated and only there.
fn check_listener(view: &View<'_>, request: &ListenerRequest) -> Result<(), ApiError> {
    let definition = &request.definition;
    if definition.protocol.is_http() != definition.instance_protocol.is_http() {
        return Err(ApiError::validation(format!(
            "A {} listener needs an InstanceProtocol of {}, not {}",
            definition.protocol,
            if definition.protocol.is_http() {
                "HTTP or HTTPS"
            } else {
                "TCP or SSL"
            },
            definition.instance_protocol
        )));
    }
    match (&definition.certificate_id, definition.protocol.is_secure()) {
        (None, true) => Err(ApiError::validation(format!(
            "A {} listener needs an SSLCertificateId",
            definition.protocol
        ))),
        (Some(_), false) => Err(ApiError::validation(format!(
            "Only HTTPS and SSL listeners take an SSLCertificateId; the listener on port {} is {}",
            request.load_balancer_port, definition.protocol
        ))),
        (Some(id), true) if !view.config.api.certificates.iter().any(|c| c.id == *id) => {
            Err(ApiError::elb(
                "CertificateNotFound",
                format!("The specified SSL ID {id:?} does not refer to a valid SSL certificate in [api] certificates"),
            ))
        }
        _ => Ok(()),
    }
}

/// Whether the running `listener` is what `definition` asks for.
fn same(view: &View<'_>, listener: &config::Listener, definition: &ListenerDefinition) -> bool {
    let certificates: Vec<config::CertificatePaths> = definition
        .certificate_id
        .iter()
        .filter_map(|id| view.config.api.certificates.iter().find(|c| c.id == *id))
        .map(|c| c.paths.clone())
        .collect();
    listener.protocol == definition.protocol
        && listener.instance_protocol == definition.instance_protocol
        && listener.instance_port == definition.instance_port
        && listener.certificates == certificates
}

/// CreateLoadBalancerListeners.
pub(crate) fn plan_create(
    view: &View<'_>,
    request: &CreateListeners,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    plan_listeners(view, &lb.name, &lb.listeners, &request.listeners)
}

/// DeleteLoadBalancerListeners: a tombstone for each port that has a listener, and its policies forgotten.
pub(crate) fn plan_delete(
    view: &View<'_>,
    request: &DeleteListeners,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    let mut changes = Vec::new();
    for port in &request.ports {
        if !lb.listeners.iter().any(|l| l.load_balancer_port == *port) {
            continue;
        }
        changes.push(Change::Put(Record::Listener(ListenerRecord {
            load_balancer: lb.name.clone(),
            load_balancer_port: *port,
            state: ListenerState::Deleted,
        })));
        let policies = Key::ListenerPolicies {
            load_balancer: lb.name.clone(),
            port: *port,
        };
        if view.records.get(&policies).is_some() {
            changes.push(Change::Delete(policies));
        }
    }
    Ok(changes)
}
