//! How the store's records combine with the configuration file (DESIGN.md "The state store": the file declares
//! load balancers; what the API changed wins at run time, until `elbe state reset`).
//!
//! Rule: the load balancer records go first: `created` replaces the file's load balancer of that name whole
//! (or adds one, with ELB's defaults), `deleted` removes it. Then each load balancer's own records, each
//! replacing what it names: zones, listeners (a definition replaces the file's listener on its port, a tombstone
//! removes it), the policies, the policies attached to listener and back-end ports, the health check, the
//! attributes the API set. Registrations go last, in the order they were written (by revision): `registered`
//! adds the instance (or replaces the file's of the same id), `deregistered` removes it. A record naming a load
//! balancer that does not exist is kept (the load balancer may come back in the next file) and ignored, and the
//! control plane says so in its log; so is a listener whose `SSLCertificateId` `[api] certificates` no longer has.
//!
//! Trade-off: the overlay builds the whole configuration again at start, on every reload and for every API
//! change; a few hundred records take microseconds, and one path means the file and the API can never disagree
//! about what runs.

use std::time::Duration;

use super::definitions::{
    Attributes, HealthCheckRecord, ListenerState, LoadBalancerState, PolicyNames, PolicyState,
};
use super::{Record, RegistrationState, Versioned};
use crate::config::{self, defaults, Config, HealthTarget, Policy, PolicyKind};

/// A configuration with the store's records laid on top.
pub(crate) struct Overlaid {
    pub config: Config,
    /// Load balancers named by records but not by the file or the store (each once, sorted).
    pub ignored: Vec<String>,
    /// Records that name something that is gone, with why (listeners whose certificate is gone).
    pub unusable: Vec<String>,
}

/// Lays `records` (any order) over `config`.
pub(super) fn overlay<'r>(
    config: &Config,
    records: impl Iterator<Item = &'r Versioned>,
) -> Overlaid {
    let mut records: Vec<&Versioned> = records.collect();
    records.sort_by_key(|versioned| versioned.revision);
    let mut overlaid = Overlaid {
        config: config.clone(),
        ignored: Vec::new(),
        unusable: Vec::new(),
    };
    for versioned in &records {
        if let Record::LoadBalancer(record) = &versioned.record {
            let lbs = &mut overlaid.config.load_balancers;
            lbs.retain(|lb| lb.name != record.name);
            if let LoadBalancerState::Created { .. } = record.state {
                lbs.push(created(&record.name, &config.api.region));
            }
        }
    }
    for versioned in &records {
        overlaid.lay(&versioned.record);
    }
    overlaid.ignored.sort();
    overlaid.ignored.dedup();
    overlaid
}

/// A load balancer created through the API, before its other records: ELB's defaults, nothing else.
fn created(name: &str, region: &str) -> config::LoadBalancer {
    config::LoadBalancer {
        name: name.to_owned(),
        region: region.to_owned(),
        cross_zone_load_balancing: defaults::CROSS_ZONE_LOAD_BALANCING,
        idle_timeout: defaults::IDLE_TIMEOUT,
        connection_draining: config::ConnectionDraining {
            enabled: defaults::CONNECTION_DRAINING_ENABLED,
            timeout: defaults::CONNECTION_DRAINING_TIMEOUT,
        },
        passive_health_checks: defaults::PASSIVE_HEALTH_CHECKS,
        access_log: None,
        availability_zones: Vec::new(),
        listeners: Vec::new(),
        health_check: config::HealthCheck {
            target: HealthTarget::Tcp { port: 80 },
            interval: defaults::HEALTH_CHECK_INTERVAL,
            timeout: defaults::HEALTH_CHECK_TIMEOUT,
            healthy_threshold: defaults::HEALTHY_THRESHOLD,
            unhealthy_threshold: defaults::UNHEALTHY_THRESHOLD,
        },
        instances: Vec::new(),
        stickiness_key: None,
        policies: Vec::new(),
        backend_servers: Vec::new(),
        rules: Vec::new(),
    }
}

impl Overlaid {
    /// Lays one record on its load balancer (the load balancer records are laid already).
    fn lay(&mut self, record: &Record) {
        let name = record.key().load_balancer().to_owned();
        let api = self.config.api.clone();
        let Some(lb) = self
            .config
            .load_balancers
            .iter_mut()
            .find(|lb| lb.name == name)
        else {
            if !matches!(record, Record::LoadBalancer(_)) {
                self.ignored.push(name);
            }
            return;
        };
        match record {
            Record::LoadBalancer(_) | Record::Tags(_) => {}
            Record::Zones(zones) => {
                lb.availability_zones = zones
                    .zones
                    .iter()
                    .map(|zone| config::AvailabilityZone {
                        name: zone.name.clone(),
                        node: zone.node,
                    })
                    .collect();
            }
            Record::Listener(record) => {
                let port = record.load_balancer_port;
                let at = lb
                    .listeners
                    .iter()
                    .position(|l| l.load_balancer_port == port);
                let ListenerState::Defined(definition) = &record.state else {
                    if let Some(at) = at {
                        lb.listeners.remove(at);
                    }
                    return;
                };
                let certificates = match &definition.certificate_id {
                    None => Vec::new(),
                    Some(id) => match api.certificates.iter().find(|c| c.id == *id) {
                        Some(certificate) => vec![certificate.paths.clone()],
                        None => {
                            self.unusable.push(format!(
                                "listener {port} of load balancer {name}: [api] certificates has no id {id:?}"
                            ));
                            return;
                        }
                    },
                };
                // Policies attached to a listener survive its definition being replaced.
                let policy_names = at
                    .map(|at| lb.listeners[at].policy_names.clone())
                    .unwrap_or_default();
                let listener = config::Listener {
                    protocol: definition.protocol,
                    load_balancer_port: port,
                    instance_protocol: definition.instance_protocol,
                    instance_port: definition.instance_port,
                    certificates,
                    ssl_policy: None,
                    policy_names,
                    accept_proxy_protocol: false,
                    freebind: false,
                };
                match at {
                    Some(at) => lb.listeners[at] = listener,
                    None => lb.listeners.push(listener),
                }
            }
            Record::ListenerPolicies(names) => {
                if let Some(listener) = lb
                    .listeners
                    .iter_mut()
                    .find(|l| l.load_balancer_port == names.port)
                {
                    listener.policy_names = names.policy_names.clone();
                }
            }
            Record::BackendPolicies(names) => backend_policies(lb, names),
            Record::Policy(policy) => {
                lb.policies.retain(|p| p.name != policy.name);
                if let Some(kind) = policy_kind(&policy.state) {
                    lb.policies.push(Policy {
                        name: policy.name.clone(),
                        kind,
                    });
                }
            }
            Record::HealthCheck(check) => match health_check(check) {
                Some(check) => lb.health_check = check,
                None => self.unusable.push(format!(
                    "the health check of load balancer {name}: target {:?} does not parse",
                    check.target
                )),
            },
            Record::Attributes(attributes) => set_attributes(lb, attributes),
            Record::Registration(registration) => {
                let id = &registration.instance_id;
                match &registration.state {
                    RegistrationState::Registered { zone, address } => {
                        let instance = config::Instance {
                            id: id.clone(),
                            zone: zone.clone(),
                            address: address.clone(),
                        };
                        match lb.instances.iter_mut().find(|i| i.id == *id) {
                            Some(declared) => *declared = instance,
                            None => lb.instances.push(instance),
                        }
                    }
                    RegistrationState::Deregistered => lb.instances.retain(|i| i.id != *id),
                }
            }
        }
    }

    /// Says in the log which records are ignored, and why (once per load balancer).
    pub(crate) fn warn_ignored(&self) {
        for name in &self.ignored {
            tracing::warn!(load_balancer = %name, "the state store has records for a load balancer the configuration does not have; they are kept, and apply if it comes back (`elbe state reset` forgets them)");
        }
        for why in &self.unusable {
            tracing::warn!("a state store record is ignored: {why}");
        }
    }
}

fn backend_policies(lb: &mut config::LoadBalancer, names: &PolicyNames) {
    match lb
        .backend_servers
        .iter_mut()
        .find(|b| b.instance_port == names.port)
    {
        Some(server) => server.policy_names = names.policy_names.clone(),
        None => lb.backend_servers.push(config::BackendServer {
            instance_port: names.port,
            policy_names: names.policy_names.clone(),
            backend_ca: None,
        }),
    }
}

pub(crate) fn policy_kind(state: &PolicyState) -> Option<PolicyKind> {
    match state {
        PolicyState::LbCookie {
            cookie_expiration_period,
        } => Some(PolicyKind::LbCookie {
            cookie_expiration_period: cookie_expiration_period.map(Duration::from_secs),
        }),
        PolicyState::AppCookie { cookie_name } => Some(PolicyKind::AppCookie {
            cookie_name: cookie_name.clone(),
        }),
        PolicyState::ProxyProtocol => Some(PolicyKind::ProxyProtocol),
        PolicyState::Deleted => None,
    }
}

/// The configuration's health check for a record (`None`: its target does not parse, which the API refuses
/// before it writes).
pub(crate) fn health_check(record: &HealthCheckRecord) -> Option<config::HealthCheck> {
    Some(config::HealthCheck {
        target: record.target.parse().ok()?,
        interval: Duration::from_secs(record.interval.into()),
        timeout: Duration::from_secs(record.timeout.into()),
        healthy_threshold: record.healthy_threshold,
        unhealthy_threshold: record.unhealthy_threshold,
    })
}

fn set_attributes(lb: &mut config::LoadBalancer, attributes: &Attributes) {
    if let Some(enabled) = attributes.cross_zone_load_balancing {
        lb.cross_zone_load_balancing = enabled;
    }
    if let Some(enabled) = attributes.connection_draining {
        lb.connection_draining.enabled = enabled;
    }
    if let Some(seconds) = attributes.connection_draining_timeout {
        lb.connection_draining.timeout = Duration::from_secs(seconds.into());
    }
    if let Some(seconds) = attributes.idle_timeout {
        lb.idle_timeout = Duration::from_secs(seconds.into());
    }
}
