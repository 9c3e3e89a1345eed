//! The store in memory: the same contract as the embedded store, kept for the life of the process only.
//!
//! Rule: an elbe run in-process (`elbe::testing`, the library's `server::start`, the demo) changes its state
//! through the same path as `elbe run` (write, then apply by revision), with nothing written to disk: such a
//! process is not restarted, and several of them may share a working folder.
//!
//! Trade-off: the records are an immutable map swapped with `ArcSwap::rcu` (no lock); each write copies the map,
//! which is nothing at the sizes an in-process elbe has.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Change, Contents, Key, Revision, StateStore, StoreFuture, Versioned};

/// The records and the revision, as one value.
#[derive(Clone, Default)]
struct Held {
    revision: Revision,
    records: BTreeMap<Key, Versioned>,
}

/// A store that forgets everything at exit.
#[derive(Default)]
pub(crate) struct MemoryStore {
    held: ArcSwap<Held>,
}

impl StateStore for MemoryStore {
    fn load(&self) -> StoreFuture<'_, Contents> {
        let held = self.held.load();
        let contents = Contents {
            revision: held.revision,
            records: held.records.values().cloned().collect(),
        };
        Box::pin(async move { Ok(contents) })
    }

    fn apply(&self, changes: Vec<Change>) -> StoreFuture<'_, Revision> {
        let before = self.held.rcu(|held| {
            let mut next = Held::clone(held);
            next.revision = Revision(held.revision.0 + 1);
            for change in &changes {
                match change {
                    Change::Put(record) => {
                        next.records.insert(
                            record.key(),
                            Versioned {
                                revision: next.revision,
                                record: record.clone(),
                            },
                        );
                    }
                    Change::Delete(key) => {
                        next.records.remove(key);
                    }
                }
            }
            Arc::new(next)
        });
        let revision = Revision(before.revision.0 + 1);
        Box::pin(async move { Ok(revision) })
    }
}
