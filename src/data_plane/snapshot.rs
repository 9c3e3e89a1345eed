//! The immutable routing state the data plane reads: what one node's listener may send requests to.
//!
//! The control plane builds a new [`NodeSnapshot`] whenever anything changes (config, registrations, health) and
//! publishes it through an `ArcSwap`; a request loads it once (`load()`, no lock) and never sees it change under it.
//! Per-instance live state (outstanding requests, the connection pool) lives in the back end's [`Target`]s behind
//! `Arc`s that the control plane carries over from one snapshot to the next, so a rebuild never loses a count or a
//! pooled connection.
//!
//! A listener's sticky-session policy ([`stickiness`]) and its rules are compiled into the snapshot too, so a
//! reload that changes them is a swap like any other, and a request reads them from the snapshot it already holds.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Rule;
use crate::data_plane::back_end::target::Target;

pub(crate) mod stickiness;

pub(crate) use stickiness::{Stickiness, StickyPolicy};

/// What one node's listener may route to right now.
#[derive(Debug, Default)]
pub struct NodeSnapshot {
    /// The instances this node may use: `InService` ones in its own zone, or in the other enabled zones when its
    /// own has none, or in all enabled zones with cross-zone load balancing (ELB-SPEC.md §3).
    pub candidates: Vec<Arc<Target>>,
    /// ELB's idle timeout: how long an instance may take to start its response before the client gets a 504.
    pub idle_timeout: Duration,
    /// The listener's sticky-session policy, if it has one (ELB-SPEC §6).
    pub(crate) stickiness: Option<Stickiness>,
    /// The listener's rules, lowest priority first; empty when it has none (the usual case, and free).
    pub(crate) rules: Arc<[Rule]>,
}

/// The published, swappable handle a node's listener holds.
pub(crate) type SharedNodeSnapshot = Arc<ArcSwap<NodeSnapshot>>;
