//! The records: one per object, each under its own key, typed and serialized with serde (JSON, the same bytes the
//! embedded store keeps and the etcd store will keep as values).
//!
//! Rule: a key names its object as the etcd store will lay keys out under its `prefix`, one object per key, so a
//! change to one object never rewrites another and a watch reports exactly what changed:
//!
//! | record             | key                                          | written by                                   |
//! |--------------------|----------------------------------------------|----------------------------------------------|
//! | registration       | `registrations/{load balancer}/{id}`         | Register/DeregisterInstances, the admin API  |
//! | load balancer      | `load_balancers/{name}`                      | CreateLoadBalancer, DeleteLoadBalancer       |
//! | zones              | `zones/{load balancer}`                      | CreateLoadBalancer, Enable/DisableAvailabilityZones |
//! | listener           | `listeners/{load balancer}/{port}`           | Create/DeleteLoadBalancerListeners           |
//! | listener policies  | `listener_policies/{load balancer}/{port}`   | SetLoadBalancerPoliciesOfListener            |
//! | health check       | `health_checks/{load balancer}`              | CreateLoadBalancer, ConfigureHealthCheck     |
//! | attributes         | `attributes/{load balancer}`                 | ModifyLoadBalancerAttributes                 |
//! | policy             | `policies/{load balancer}/{name}`            | Create.../DeleteLoadBalancerPolicy           |
//! | back-end policies  | `backend_policies/{load balancer}/{port}`    | SetLoadBalancerPoliciesForBackendServer      |
//! | tags               | `tags/{load balancer}`                       | CreateLoadBalancer, AddTags, RemoveTags      |
//!
//! A record names its kind (`"kind": "registration"`), so a new kind is a new variant of [`Record`] and [`Key`]
//! and old stores read unchanged. The record types of a load balancer's own settings are in `store/definitions`.
//!
//! A registration is per (load balancer, instance id): `registered` with its zone and address, or `deregistered`,
//! a tombstone, so that deregistering an instance the configuration file declares survives a restart. Load
//! balancers, listeners and policies have tombstones for the same reason (deleting what the file declares). The
//! trade-off: tombstones are kept until `elbe state reset`, one small record per object ever deleted.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::definitions::{
    Attributes, HealthCheckRecord, ListenerRecord, LoadBalancerRecord, PolicyNames, PolicyRecord,
    Tags, Zones,
};
use crate::config::{self, InstanceAddress};

/// The key of one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    /// An instance's registration with a load balancer.
    Registration {
        load_balancer: String,
        instance_id: String,
    },
    /// A load balancer created (or a file's deleted) through the API.
    LoadBalancer { name: String },
    /// A load balancer's enabled zones and their nodes.
    Zones { load_balancer: String },
    /// One listener, by its load balancer port.
    Listener { load_balancer: String, port: u16 },
    /// The policies of one listener.
    ListenerPolicies { load_balancer: String, port: u16 },
    /// A load balancer's health check.
    HealthCheck { load_balancer: String },
    /// A load balancer's attributes set through the API.
    Attributes { load_balancer: String },
    /// One policy, by name.
    Policy { load_balancer: String, name: String },
    /// The policies of connections to one instance port.
    BackendPolicies { load_balancer: String, port: u16 },
    /// A load balancer's tags.
    Tags { load_balancer: String },
}

impl Key {
    /// The load balancer the record belongs to (DeleteLoadBalancer forgets every record of it).
    pub(crate) fn load_balancer(&self) -> &str {
        match self {
            Key::LoadBalancer { name } => name,
            Key::Registration { load_balancer, .. }
            | Key::Zones { load_balancer }
            | Key::Listener { load_balancer, .. }
            | Key::ListenerPolicies { load_balancer, .. }
            | Key::HealthCheck { load_balancer }
            | Key::Attributes { load_balancer }
            | Key::Policy { load_balancer, .. }
            | Key::BackendPolicies { load_balancer, .. }
            | Key::Tags { load_balancer } => load_balancer,
        }
    }
}

impl fmt::Display for Key {
    /// The key as a path (`registrations/web/i-1`); `%` and `/` inside a name are escaped, so every key is one
    /// path and one path one key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lb = escape(self.load_balancer());
        match self {
            Key::Registration { instance_id, .. } => {
                write!(f, "registrations/{lb}/{}", escape(instance_id))
            }
            Key::LoadBalancer { .. } => write!(f, "load_balancers/{lb}"),
            Key::Zones { .. } => write!(f, "zones/{lb}"),
            Key::Listener { port, .. } => write!(f, "listeners/{lb}/{port}"),
            Key::ListenerPolicies { port, .. } => write!(f, "listener_policies/{lb}/{port}"),
            Key::HealthCheck { .. } => write!(f, "health_checks/{lb}"),
            Key::Attributes { .. } => write!(f, "attributes/{lb}"),
            Key::Policy { name, .. } => write!(f, "policies/{lb}/{}", escape(name)),
            Key::BackendPolicies { port, .. } => write!(f, "backend_policies/{lb}/{port}"),
            Key::Tags { .. } => write!(f, "tags/{lb}"),
        }
    }
}

fn escape(segment: &str) -> String {
    segment.replace('%', "%25").replace('/', "%2F")
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Record {
    /// An instance registered with, or deregistered from, a load balancer at run time.
    Registration(Registration),
    /// A load balancer created, or deleted, through the API.
    LoadBalancer(LoadBalancerRecord),
    /// The zones a load balancer has enabled, each with its node's address.
    Zones(Zones),
    /// A listener created, or deleted, through the API.
    Listener(ListenerRecord),
    /// SetLoadBalancerPoliciesOfListener.
    ListenerPolicies(PolicyNames),
    /// ConfigureHealthCheck (and CreateLoadBalancer's default check).
    HealthCheck(HealthCheckRecord),
    /// ModifyLoadBalancerAttributes: the attributes it set.
    Attributes(Attributes),
    /// A policy created, or deleted, through the API.
    Policy(PolicyRecord),
    /// SetLoadBalancerPoliciesForBackendServer.
    BackendPolicies(PolicyNames),
    /// AddTags, RemoveTags and CreateLoadBalancer's tags: all of a load balancer's tags.
    Tags(Tags),
}

impl Record {
    /// The key the record is kept under.
    pub(crate) fn key(&self) -> Key {
        match self {
            Record::Registration(registration) => Key::Registration {
                load_balancer: registration.load_balancer.clone(),
                instance_id: registration.instance_id.clone(),
            },
            Record::LoadBalancer(record) => Key::LoadBalancer {
                name: record.name.clone(),
            },
            Record::Zones(zones) => Key::Zones {
                load_balancer: zones.load_balancer.clone(),
            },
            Record::Listener(listener) => Key::Listener {
                load_balancer: listener.load_balancer.clone(),
                port: listener.load_balancer_port,
            },
            Record::ListenerPolicies(names) => Key::ListenerPolicies {
                load_balancer: names.load_balancer.clone(),
                port: names.port,
            },
            Record::HealthCheck(check) => Key::HealthCheck {
                load_balancer: check.load_balancer.clone(),
            },
            Record::Attributes(attributes) => Key::Attributes {
                load_balancer: attributes.load_balancer.clone(),
            },
            Record::Policy(policy) => Key::Policy {
                load_balancer: policy.load_balancer.clone(),
                name: policy.name.clone(),
            },
            Record::BackendPolicies(names) => Key::BackendPolicies {
                load_balancer: names.load_balancer.clone(),
                port: names.port,
            },
            Record::Tags(tags) => Key::Tags {
                load_balancer: tags.load_balancer.clone(),
            },
        }
    }
}

/// An instance's registration with a load balancer, as the last run-time change left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Registration {
    pub load_balancer: String,
    pub instance_id: String,
    #[serde(flatten)]
    pub state: RegistrationState,
}

/// Registered (where the instance is), or deregistered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum RegistrationState {
    Registered {
        zone: String,
        #[serde(with = "address_text")]
        address: InstanceAddress,
    },
    Deregistered,
}

impl Registration {
    /// `instance` registered with `load_balancer`.
    pub(crate) fn registered(load_balancer: &str, instance: &config::Instance) -> Registration {
        Registration {
            load_balancer: load_balancer.to_owned(),
            instance_id: instance.id.clone(),
            state: RegistrationState::Registered {
                zone: instance.zone.clone(),
                address: instance.address.clone(),
            },
        }
    }

    /// `instance_id` deregistered from `load_balancer` (the tombstone).
    pub(crate) fn deregistered(load_balancer: &str, instance_id: &str) -> Registration {
        Registration {
            load_balancer: load_balancer.to_owned(),
            instance_id: instance_id.to_owned(),
            state: RegistrationState::Deregistered,
        }
    }
}

/// An instance address as the text the configuration file takes (`127.0.0.1:8000`, `backend:8000`), so the
/// record reads as the file does and is parsed back by the same rules.
mod address_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::InstanceAddress;

    pub(super) fn serialize<S: Serializer>(
        address: &InstanceAddress,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(address)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<InstanceAddress, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
