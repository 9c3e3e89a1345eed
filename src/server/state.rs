//! The state store seen from outside a running elbe: `elbe state show` prints what `state_dir` keeps, `elbe state
//! reset` forgets it (DESIGN.md "The state store").
//!
//! Rule: showing reads beside a running elbe (the store admits readers); resetting writes, so it refuses while an
//! elbe holds the store ([`StoreError::Locked`]) rather than change what a running process believes it has. Reset
//! forgets the records (registrations and tombstones: the next start serves the file as written) in one batch,
//! and leaves the stickiness key, whose loss would unstick every client.

use std::path::Path;

use serde_json::json;

use crate::control_plane::store::{embedded_file, Change, EmbeddedStore, StateStore, StoreError};

/// What the state store in `state_dir` holds, as JSON: `{"store": file, "revision": n, "records": [{"key",
/// "revision", "kind", ...}]}`, records sorted by key. A store never written shows revision 0 and no records.
pub async fn show_state(state_dir: &Path) -> Result<serde_json::Value, StoreError> {
    let dir = state_dir.to_owned();
    let path = embedded_file(state_dir);
    let read = tokio::task::spawn_blocking(move || EmbeddedStore::read(&dir))
        .await
        .map_err(|_| StoreError::Stopped { path: path.clone() })??;
    let contents = read.unwrap_or_default();
    let mut records: Vec<serde_json::Value> = Vec::new();
    for versioned in contents.records {
        let key = versioned.record.key().to_string();
        let mut value = serde_json::to_value(&versioned).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            key: key.clone(),
            source,
        })?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("key".into(), key.into());
        }
        records.push(value);
    }
    records.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    Ok(json!({
        "store": path.display().to_string(),
        "revision": contents.revision.0,
        "records": records,
    }))
}

/// Forgets every record of the state store in `state_dir` (nothing to do without one); returns how many there
/// were. Refuses with [`StoreError::Locked`] while an elbe holds the store.
pub async fn reset_state(state_dir: &Path) -> Result<usize, StoreError> {
    if !embedded_file(state_dir).exists() {
        return Ok(0);
    }
    let store = EmbeddedStore::open(state_dir).await?;
    let result = forget_all(&store).await;
    store.close().await;
    result
}

async fn forget_all(store: &EmbeddedStore) -> Result<usize, StoreError> {
    let contents = store.load().await?;
    let forgotten = contents.records.len();
    if forgotten > 0 {
        let changes = contents
            .records
            .iter()
            .map(|versioned| Change::Delete(versioned.record.key()))
            .collect();
        store.apply(changes).await?;
    }
    Ok(forgotten)
}
