//! The records: one per object, each under its own key, typed and serialized with serde (JSON, the same bytes the
//! embedded store keeps and the etcd store will keep as values).
//!
//! Rule: a key names its object as the etcd store will lay keys out under its `prefix`, one object per key, so a
//! change to one object never rewrites another and a watch reports exactly what changed:
//!
//! | record         | key                                   | written by                                  |
//! |----------------|---------------------------------------|---------------------------------------------|
//! | registration   | `registrations/{load balancer}/{id}`  | Register/DeregisterInstances, the admin API |
//! | load balancer  | `load_balancers/{name}`               | CreateLoadBalancer (to come)                |
//! | listener       | `listeners/{load balancer}/{port}`    | CreateLoadBalancerListeners (to come)       |
//! | attributes     | `attributes/{load balancer}`          | ModifyLoadBalancerAttributes (to come)      |
//! | policy         | `policies/{load balancer}/{name}`     | Create...Policy (to come)                   |
//! | tags           | `tags/{load balancer}`                | AddTags, RemoveTags (to come)               |
//!
//! A record names its kind (`"kind": "registration"`), so a new kind is a new variant of [`Record`] and [`Key`]
//! and old stores read unchanged. Only registrations exist this round; the others come with the actions that
//! write them.
//!
//! A registration is per (load balancer, instance id): `registered` with its zone and address, or `deregistered`,
//! a tombstone, so that deregistering an instance the configuration file declares survives a restart. The
//! trade-off: tombstones are kept until `elbe state reset`, one small record per instance ever deregistered.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{self, InstanceAddress};

/// The key of one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    /// An instance's registration with a load balancer.
    Registration {
        load_balancer: String,
        instance_id: String,
    },
}

impl fmt::Display for Key {
    /// The key as a path (`registrations/web/i-1`); `%` and `/` inside a name are escaped, so every key is one
    /// path and one path one key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Registration {
                load_balancer,
                instance_id,
            } => write!(
                f,
                "registrations/{}/{}",
                escape(load_balancer),
                escape(instance_id)
            ),
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
}

impl Record {
    /// The key the record is kept under.
    pub(crate) fn key(&self) -> Key {
        match self {
            Record::Registration(registration) => Key::Registration {
                load_balancer: registration.load_balancer.clone(),
                instance_id: registration.instance_id.clone(),
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
