//! Who this process is in the cluster (issue 16 item 3): what its member key says besides its nodes, and how
//! names are written into the keys under `{prefix}/members/` and `{prefix}/health/`.
//!
//! Rule: a name inside a key is one path segment, `%` and `/` escaped as the store's record keys are
//! (`store/record`), so `health/{node}/{lb}/{instance}` always splits back into three names.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config;
use crate::control_plane::control::members::Member;
use crate::control_plane::control::Control;

/// Who this process is in the cluster: what its member key says besides its nodes.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub node_id: String,
    pub zones: Vec<String>,
    pub admin: SocketAddr,
    pub started_unix_ms: u64,
}

impl Identity {
    pub(super) fn of(cluster: &config::Cluster, admin: SocketAddr) -> Identity {
        Identity {
            node_id: cluster.node_id.clone(),
            zones: cluster.zones.clone(),
            admin,
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
        }
    }

    /// The member key's value, with the nodes bound now.
    pub(super) fn member(&self, control: &Control) -> Member {
        Member {
            node_id: self.node_id.clone(),
            zones: self.zones.clone(),
            nodes: control.bound_nodes(),
            admin: self.admin.to_string(),
            started_unix_ms: self.started_unix_ms,
        }
    }
}

/// One path segment: `%` and `/` inside a name escaped, as the store's record keys are (`store/record`).
pub(super) fn segment(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// [`segment`] read back, left to right (a `%` not starting `%2F` or `%25` stays as it is).
pub(super) fn unsegment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let (decoded, skip) = match rest.get(at + 1..at + 3) {
            Some("2F") => ('/', 3),
            Some("25") => ('%', 3),
            _ => ('%', 1),
        };
        out.push(decoded);
        rest = &rest[at + skip..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_from_their_segments() {
        for name in ["web", "a/b", "100%", "%2F", "%252F/%", "i-1"] {
            let written = segment(name);
            assert!(!written.contains('/'), "{written}");
            assert_eq!(unsegment(&written), name);
        }
    }
}
