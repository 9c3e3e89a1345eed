//! The records a process has applied, and how they combine with the configuration file (DESIGN.md "The state
//! store").
//!
//! Rule: the file declares load balancers and their instances; the store's registrations are laid on top, record
//! by record: `registered` adds the instance to its load balancer (or replaces the file's instance of the same id),
//! `deregistered` removes it. A record naming a load balancer the file does not have is kept (the load balancer
//! may come back in the next file) and ignored, and the control plane says so in its log. At start and on every
//! reload the same [`Records::overlay`] runs, so what the API changed wins over the file until `elbe state reset`.
//!
//! Trade-off: instances the store adds come after the file's, in the order they were written (by revision), so
//! the result does not depend on how the store happens to list its keys.

use std::collections::HashMap;

use super::{Contents, Key, Record, RegistrationState, Versioned};
use crate::config::{self, Config};

/// The records applied, by key.
#[derive(Debug, Default)]
pub(crate) struct Records(HashMap<Key, Versioned>);

/// A configuration with the store's records laid on top.
pub(crate) struct Overlaid {
    pub config: Config,
    /// Load balancers named by records but not by the file (each once, sorted).
    pub ignored: Vec<String>,
}

impl Records {
    /// The records a store loaded.
    pub(crate) fn from_contents(contents: Contents) -> Records {
        let mut records = Records::default();
        for versioned in contents.records {
            records.take(versioned);
        }
        records
    }

    /// Takes `versioned` unless a newer write of the same key was taken already; returns whether it was taken
    /// (and so must be applied to the running state). A write at the same revision is the same write.
    pub(crate) fn take(&mut self, versioned: Versioned) -> bool {
        let key = versioned.record.key();
        if let Some(held) = self.0.get(&key) {
            if held.revision > versioned.revision {
                return false;
            }
        }
        self.0.insert(key, versioned);
        true
    }

    /// The record held under `key`.
    pub(crate) fn get(&self, key: &Key) -> Option<&Versioned> {
        self.0.get(key)
    }

    /// `config` with every record applied (see the module documentation).
    pub(crate) fn overlay(&self, config: &Config) -> Overlaid {
        let mut config = config.clone();
        let mut ignored = Vec::new();
        let mut records: Vec<&Versioned> = self.0.values().collect();
        records.sort_by_key(|versioned| versioned.revision);
        for versioned in records {
            let Record::Registration(registration) = &versioned.record;
            let Some(lb) = config
                .load_balancers
                .iter_mut()
                .find(|lb| lb.name == registration.load_balancer)
            else {
                ignored.push(registration.load_balancer.clone());
                continue;
            };
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
        ignored.sort();
        ignored.dedup();
        Overlaid { config, ignored }
    }
}

impl Overlaid {
    /// Says in the log which records are ignored, and why (once per load balancer).
    pub(crate) fn warn_ignored(&self) {
        for name in &self.ignored {
            tracing::warn!(load_balancer = %name, "the state store has registrations for a load balancer the configuration does not have; they are kept, and apply if it comes back (`elbe state reset` forgets them)");
        }
    }
}
