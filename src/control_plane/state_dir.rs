//! The state directory (`state_dir`, DESIGN.md "The state store"): what elbe must remember across restarts. Two
//! things: the state store (`store.redb`, the registrations made at run time: `control_plane/store`), and here the
//! secret that authenticates AWSELB cookies (ELB-SPEC §6) when a load balancer configures no `stickiness_key`, so
//! a restart does not unstick every client.
//!
//! Rule: the folder is created only when something is kept in it (mode 0700); the key file is written crash-safely
//! and exactly once: written to a temporary file (mode 0600), synced, then hard-linked into place, which fails
//! if another process got there first (that one's key is then read and used). A key file that does not hold a key
//! is an error that names it, never silently replaced: replacing it would unstick every client.
//!
//! Trade-off: the key is 32 random bytes as 64 hex digits, readable with `cat`. In cluster mode the file holds
//! the cluster's key (`adopt_stickiness_secret`, shared through etcd), so every process honours every other's
//! cookies; several single processes share one only by `stickiness_key` in every file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The key file's name inside `state_dir`.
pub(crate) const STICKINESS_KEY_FILE: &str = "stickiness.key";
/// Bytes of a generated secret.
const SECRET_BYTES: usize = 32;

/// The state directory could not give elbe what it keeps there.
#[derive(Debug, thiserror::Error)]
#[error("state directory: {what} {}: {source}", path.display())]
pub struct StateDirError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The secret kept in `state_dir`, when a sticky listener relies on the process's secret (its load balancer has
/// no `stickiness_key`); `None` when none does, and then no folder is created.
pub(crate) fn kept_stickiness_secret(config: &Config) -> Result<Option<Vec<u8>>, StateDirError> {
    let needed = config.load_balancers.iter().any(|lb| {
        lb.stickiness_key.is_none() && lb.listeners.iter().any(|l| !l.policy_names.is_empty())
    });
    if !needed {
        return Ok(None);
    }
    stickiness_secret(&config.state_dir).map(Some)
}

/// The stickiness secret kept in `dir`, made (and the folder created) if there is none yet.
pub(crate) fn stickiness_secret(dir: &Path) -> Result<Vec<u8>, StateDirError> {
    let path = dir.join(STICKINESS_KEY_FILE);
    match read_secret(&path) {
        Ok(secret) => return Ok(secret),
        Err(error) if error.source.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    create(dir)?;
    let secret = fresh_secret().map_err(|source| StateDirError {
        what: "cannot generate a key for",
        path: path.clone(),
        source,
    })?;
    let temporary = dir.join(format!(".{STICKINESS_KEY_FILE}.{}", std::process::id()));
    let written = write_synced(&temporary, &secret).and_then(|()| fs::hard_link(&temporary, &path));
    let _ = fs::remove_file(&temporary);
    match written {
        Ok(()) => {
            // The new name is durable once the folder is synced.
            if let Ok(folder) = File::open(dir) {
                let _ = folder.sync_all();
            }
            tracing::info!(path = %path.display(), "generated the stickiness key");
            Ok(secret)
        }
        // Another process wrote it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => read_secret(&path),
        Err(source) => Err(StateDirError {
            what: "cannot write",
            path,
            source,
        }),
    }
}

/// Makes the key file in `dir` hold `secret` (cluster mode: the cluster's shared key, `store/etcd/secret`, so
/// a cookie any process issued is honoured here, and a start while etcd is down still has it); answers whether
/// the file changed. The file is replaced whole (written, synced, renamed over), never half-written; replacing
/// a different key is deliberate here, and logged, since this process's cookies so far were made with it.
#[cfg(any(feature = "cluster", test))]
pub(crate) fn adopt_stickiness_secret(dir: &Path, secret: &[u8]) -> Result<bool, StateDirError> {
    let path = dir.join(STICKINESS_KEY_FILE);
    match read_secret(&path) {
        Ok(held) if held == secret => return Ok(false),
        Ok(_) => tracing::warn!(path = %path.display(),
            "replacing this process's stickiness key with the cluster's: cookies it issued before are not honoured"),
        Err(error) if error.source.kind() == std::io::ErrorKind::NotFound => {}
        // A damaged file is replaced by the cluster's key rather than refused: the cluster's key is the truth.
        Err(error) => tracing::warn!(%error, "replacing it with the cluster's stickiness key"),
    }
    create(dir)?;
    let temporary = dir.join(format!(".{STICKINESS_KEY_FILE}.{}", std::process::id()));
    let written = write_synced(&temporary, secret).and_then(|()| fs::rename(&temporary, &path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(|source| StateDirError {
        what: "cannot write",
        path: path.clone(),
        source,
    })?;
    if let Ok(folder) = File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(true)
}

/// Creates `dir` (and its parents) if it is not there, private to elbe's user (mode 0700): what is kept in it
/// (the stickiness key, the state store) is elbe's alone.
pub(crate) fn create(dir: &Path) -> Result<(), StateDirError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StateDirError {
            what: "cannot create",
            path: dir.to_owned(),
            source,
        })
}

/// A secret for this process only (lost at exit): used until, or instead of, the one in `state_dir`.
pub(crate) fn random_secret() -> Vec<u8> {
    fresh_secret().unwrap_or_else(|error| {
        // No system randomness is extraordinary; cookies made with this secret are forgeable by whoever can
        // guess the process's start time, so say so.
        tracing::error!(%error, "no system randomness: the in-memory stickiness key is weak");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{nanos}-{}", std::process::id()).into_bytes()
    })
}

fn fresh_secret() -> Result<Vec<u8>, std::io::Error> {
    let mut secret = vec![0u8; SECRET_BYTES];
    getrandom::getrandom(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(secret)
}

fn write_synced(path: &Path, secret: &[u8]) -> Result<(), std::io::Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(format!("{hex}\n").as_bytes())?;
    file.sync_all()
}

fn read_secret(path: &Path) -> Result<Vec<u8>, StateDirError> {
    let error = |what, source| StateDirError {
        what,
        path: path.to_owned(),
        source,
    };
    let text = fs::read_to_string(path).map_err(|e| error("cannot read", e))?;
    let text = text.trim();
    let bad = || {
        error(
            "does not hold a key (64 hex digits; remove it to have a new one made, which unsticks every client):",
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a key"),
        )
    };
    if text.len() != 2 * SECRET_BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let first = stickiness_secret(&dir).unwrap();
        assert_eq!(first.len(), SECRET_BYTES);
        let mode = fs::metadata(dir.join(STICKINESS_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            stickiness_secret(&dir).unwrap(),
            first,
            "read back, not made anew"
        );
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn the_clusters_key_replaces_this_processs_whole_and_only_when_it_differs() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let own = stickiness_secret(&dir).unwrap();
        assert!(
            !adopt_stickiness_secret(&dir, &own).unwrap(),
            "the same key: nothing written"
        );
        let cluster = vec![7u8; SECRET_BYTES];
        assert!(adopt_stickiness_secret(&dir, &cluster).unwrap());
        assert_eq!(
            stickiness_secret(&dir).unwrap(),
            cluster,
            "read back as the process's key"
        );
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        let mode = fs::metadata(dir.join(STICKINESS_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_that_holds_no_key_is_an_error_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join(STICKINESS_KEY_FILE);
        fs::write(&path, "not a key\n").unwrap();
        let error = stickiness_secret(root.path()).unwrap_err();
        assert!(error.to_string().contains("does not hold a key"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    }
}
