//! The records a process has applied, one per key, each at the revision that last wrote it.
//!
//! Rule: a record is taken only when it is not older than the one held for its key ([`Records::take`]), so
//! writes land in memory in the store's order; how the records combine with the file is `store/overlay`,
//! which start, every reload and every API change run the same way.
//!
//! Trade-off: a `HashMap` by key, cloned whole when an API change is staged (so a refused change leaves the
//! held records untouched); records number in the hundreds.

use std::collections::HashMap;

use super::overlay::Overlaid;
use super::{Contents, Key, Revision, Versioned};
use crate::config::Config;

/// The records applied, by key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Records(HashMap<Key, Versioned>);

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

    /// `config` with every record laid on top (`store/overlay`).
    pub(crate) fn overlay(&self, config: &Config) -> Overlaid {
        super::overlay::overlay(config, self.0.values())
    }

    /// Forgets the record under `key`, deleted by the batch at `revision`, unless a newer write of it was taken.
    pub(crate) fn forget_at(&mut self, key: &Key, revision: Revision) {
        if self
            .0
            .get(key)
            .is_some_and(|held| held.revision <= revision)
        {
            self.0.remove(key);
        }
    }

    /// Every record held, by key, as a store's contents at `revision` (cluster mode's local copy is written
    /// from them).
    #[cfg(feature = "cluster")]
    pub(crate) fn contents(&self, revision: Revision) -> Contents {
        let mut records: Vec<Versioned> = self.0.values().cloned().collect();
        records.sort_by_key(|versioned| versioned.record.key());
        Contents { revision, records }
    }

    /// The keys of every record of `load_balancer`.
    pub(crate) fn keys_of(&self, load_balancer: &str) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .0
            .keys()
            .filter(|key| key.load_balancer() == load_balancer)
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}
