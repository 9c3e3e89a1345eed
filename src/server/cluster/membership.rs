//! This process as a member of the cluster (issue 16 items 3 and 4, DESIGN.md "The state store"): its lease, its
//! member key and its views of instance health, kept in etcd while it runs; and leaving on purpose (SIGTERM).
//!
//! Rule: one task holds a lease of `[cluster] lease_ttl`, renewed every third of it, and keeps under it
//! `{prefix}/members/{node_id}` (the [`Member`]: node id, zones, the nodes as bound, the admin address, the start
//! time) and `{prefix}/health/{node_id}/{lb}/{instance id}` (this process's own state of each instance, as its
//! own checks have it). It wakes when the control plane publishes (a node bound, an instance registered or
//! deregistered, a state flipped: `Members::changed`) and writes only what differs from what it last wrote, in
//! one transaction: changes only, coalesced (states that flip twice between two wakes are one write of the last),
//! the latest state winning. A write that fails is tried again at the next renewal or change; a lease found
//! expired (etcd was unreachable for longer than the TTL) is granted again and everything is written again under
//! it. Leaving revokes the lease: etcd deletes the member and all its views in one revision, so every other
//! member drops its nodes from their DNS answers at once.
//!
//! Trade-off: the writer reads the state it writes (every instance's health, the bound nodes) when it wakes,
//! rather than taking each change as an event: the health-check path only bumps a counter on a channel, a burst
//! of changes costs one read and one write, and no change can be lost in a full queue.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::control_plane::control::members::{HealthRecord, Leaving};
use crate::control_plane::control::Control;
use crate::control_plane::store::{EtcdStore, Lease, LeasedChange, Renewed, StoreError};
use crate::server::Server;

use super::identity::{segment, Identity};

/// How long [`join`] waits for the other members' keys at start.
const FIRST_LOAD: Duration = Duration::from_secs(2);

/// How long [`Server::leave_cluster`] waits for the lease to be revoked (a revoke is bounded by the store's
/// request timeout; this is that and some).
const REVOKE_WITHIN: Duration = Duration::from_secs(5);

/// Makes this process a member of the cluster (`cluster/membership`) and follows the others (`cluster/view`):
/// the view is published before this returns, with the other members as etcd has them unless it does not answer
/// within the store's request timeout (then as soon as it does).
pub(super) async fn join(
    server: &Server,
    store: &EtcdStore,
    cluster: &crate::config::Cluster,
) -> Vec<tokio::task::JoinHandle<()>> {
    let me = Identity::of(cluster, server.admin_address());
    let control = Arc::downgrade(&server.core.control);
    let inputs = super::view::Inputs {
        members: store.mirror("members"),
        health: store.mirror("health"),
        zone: server.core.dns.as_ref().map(|(_, zone)| zone.clone()),
    };
    // This process alone at once (its own nodes answered), then everyone once the folders are loaded.
    let mut others = super::view::Others::default();
    super::view::publish(&server.core.control, &me, &others, inputs.zone.as_ref());
    let (mut members, mut health) = (inputs.members.entries(), inputs.health.entries());
    let loaded = async {
        let _ = members.wait_for(Option::is_some).await;
        let _ = health.wait_for(Option::is_some).await;
    };
    if tokio::time::timeout(FIRST_LOAD, loaded).await.is_ok() {
        others = super::view::current(&me.node_id, &members, &health).unwrap_or(others);
        super::view::publish(&server.core.control, &me, &others, inputs.zone.as_ref());
    }
    let writer = keep_member(
        store.clone(),
        control.clone(),
        me.clone(),
        cluster.lease_ttl,
    );
    vec![
        tokio::spawn(writer),
        tokio::spawn(super::view::follow(control, me, inputs)),
    ]
}

/// The member task (module rule); it ends when this process has left, or the server is gone.
pub(super) async fn keep_member(
    store: EtcdStore,
    control: Weak<Control>,
    me: Identity,
    ttl: Duration,
) {
    let Some((mut changes, mut leaving)) = control.upgrade().map(|c| {
        let members = c.members();
        (members.watch_changes(), members.watch_leaving())
    }) else {
        return;
    };
    let mut renewal = tokio::time::interval((ttl / 3).max(Duration::from_millis(100)));
    renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut member = Writer::default();
    loop {
        if member.lease.is_none() {
            member.grant(&store, ttl).await;
        }
        if member.dirty {
            let Some(control) = control.upgrade() else {
                return;
            };
            member.write(&store, &control, &me).await;
        }
        let woke = tokio::select! {
            _ = renewal.tick() => Woke::Renew,
            changed = changes.changed() => match changed {
                Ok(()) => Woke::Changed,
                Err(_) => return,
            },
            // (The guard `wait_for` answers is dropped here: it holds the channel's lock.)
            left = leaving.wait_for(|now| *now != Leaving::Staying) => match left {
                Ok(_) => Woke::Leave,
                Err(_) => return,
            },
        };
        match woke {
            Woke::Renew => member.renew(&store).await,
            Woke::Changed => member.dirty = true,
            Woke::Leave => {
                leave(&store, member.lease.take()).await;
                if let Some(control) = control.upgrade() {
                    control.members().set_leaving(Leaving::Left);
                }
                return;
            }
        }
    }
}

/// Why the member task woke.
enum Woke {
    Renew,
    Changed,
    Leave,
}

/// What the member task holds: the lease, and what it wrote under it.
#[derive(Default)]
struct Writer {
    lease: Option<Lease>,
    /// The keys written under the lease and their values, as etcd has them.
    written: BTreeMap<String, Vec<u8>>,
    /// Something may differ from what was written (or a write failed): write at the next turn.
    dirty: bool,
    /// etcd did not answer the last call (logged once per outage).
    unreachable: bool,
}

impl Writer {
    async fn grant(&mut self, store: &EtcdStore, ttl: Duration) {
        match store.grant(ttl).await {
            Ok(lease) => {
                tracing::info!(lease = lease.id(), ?ttl, "cluster member: lease granted; writing this member's key and health views under it");
                self.lease = Some(lease);
                self.written.clear();
                self.dirty = true;
                self.reachable();
            }
            Err(error) => self.failed(&error, "cannot grant a lease"),
        }
    }

    async fn renew(&mut self, store: &EtcdStore) {
        let Some(lease) = self.lease.as_mut() else {
            return;
        };
        match lease.renew(store).await {
            Ok(Renewed::Alive) => self.reachable(),
            Ok(Renewed::Expired) => self.expired(),
            Err(error) => self.failed(&error, "cannot renew the lease"),
        }
    }

    /// Writes what differs between the state now and what was written.
    async fn write(&mut self, store: &EtcdStore, control: &Control, me: &Identity) {
        let Some(lease) = &self.lease else {
            return;
        };
        let wanted = wanted(control, me);
        let member_path = format!("members/{}", segment(&me.node_id));
        let mut changes = Vec::new();
        for (path, value) in &wanted {
            if self.written.get(path) != Some(value) {
                let change = LeasedChange::Put(path.clone(), value.clone());
                // The member key first: a new lease's member and views then land together.
                if *path == member_path {
                    changes.insert(0, change);
                } else {
                    changes.push(change);
                }
            }
        }
        for path in self.written.keys().filter(|p| !wanted.contains_key(*p)) {
            changes.push(LeasedChange::Delete(path.clone()));
        }
        self.dirty = false;
        if changes.is_empty() {
            return;
        }
        let count = changes.len();
        match store.write_leased(lease, changes).await {
            Ok(Renewed::Alive) => {
                if self.written.get(&member_path) != wanted.get(&member_path) {
                    tracing::info!(node_id = %me.node_id, nodes = ?control.bound_nodes().iter().map(|n| n.address).collect::<Vec<_>>(), "cluster member: member key written");
                }
                tracing::debug!(
                    keys = count,
                    "cluster member: changes written under the lease"
                );
                self.written = wanted;
                self.reachable();
            }
            Ok(Renewed::Expired) => self.expired(),
            Err(error) => {
                self.dirty = true;
                self.failed(&error, "cannot write under the lease; trying again");
            }
        }
    }

    fn expired(&mut self) {
        tracing::warn!("cluster member: the lease expired (etcd was unreachable for longer than lease_ttl); granting a new one and writing everything again");
        self.lease = None;
        self.written.clear();
        self.dirty = true;
    }

    fn failed(&mut self, error: &StoreError, what: &str) {
        if !self.unreachable {
            tracing::warn!(%error, "cluster member: {what}; the last known members stay in the answers");
        }
        self.unreachable = true;
    }

    fn reachable(&mut self) {
        if self.unreachable {
            tracing::info!("cluster member: etcd answers again");
        }
        self.unreachable = false;
    }
}

/// Every key this process keeps under its lease now, and its value.
fn wanted(control: &Control, me: &Identity) -> BTreeMap<String, Vec<u8>> {
    let mut wanted = BTreeMap::new();
    let node = segment(&me.node_id);
    // Serialising these plain structs cannot fail; a failure would only leave the key out.
    if let Ok(member) = serde_json::to_vec(&me.member(control)) {
        wanted.insert(format!("members/{node}"), member);
    }
    for (lb, id, health) in control.own_health() {
        if let Ok(value) = serde_json::to_vec(&HealthRecord::of(&health)) {
            let path = format!("health/{node}/{}/{}", segment(&lb), segment(&id));
            wanted.insert(path, value);
        }
    }
    wanted
}

/// Revokes the lease: the member key and its views go in one revision.
async fn leave(store: &EtcdStore, lease: Option<Lease>) {
    let Some(lease) = lease else {
        tracing::warn!("leaving the cluster: no lease is held now (etcd unreachable); the other members drop this process when its last lease expires");
        return;
    };
    let id = lease.id();
    match store.revoke(lease).await {
        Ok(()) => tracing::info!(
            lease = id,
            "leaving the cluster: lease revoked; the other members no longer answer this process's nodes"
        ),
        Err(error) => tracing::warn!(%error, lease = id,
            "leaving the cluster: cannot revoke the lease; the other members drop this process when it expires (lease_ttl)"),
    }
}

impl Server {
    /// Cluster mode's first phases of a SIGTERM (issue 16 item 3, DESIGN.md "The state store"): leaves the
    /// cluster (revokes the lease, so every other member drops this process's nodes from its DNS answers at once),
    /// stops answering its own nodes in its own DNS, then keeps serving for `[cluster] dns_drain` while clients
    /// that resolved before move on, unless `cut_short` (a second SIGTERM) completes first. The drain and stop
    /// ([`Server::shutdown`]) come after. Returns at once outside cluster mode.
    pub async fn leave_cluster(&self, cut_short: impl Future<Output = ()>) {
        let Some(dns_drain) = self.live().file.cluster.as_ref().map(|c| c.dns_drain) else {
            return;
        };
        let members = self.core.control.members();
        tracing::info!("leaving the cluster: revoking this member's lease");
        let mut leaving = members.watch_leaving();
        members.set_leaving(Leaving::Asked);
        // (The guard `wait_for` answers holds the channel's lock: dropped within this statement.)
        let left =
            tokio::time::timeout(REVOKE_WITHIN, leaving.wait_for(|now| *now == Leaving::Left))
                .await
                .is_ok_and(|left| left.is_ok());
        if !left {
            tracing::warn!(within = ?REVOKE_WITHIN, "leaving the cluster: the member task did not answer; going on");
            members.set_leaving(Leaving::Left);
        }
        tracing::info!(?dns_drain, "left the cluster: this process's own DNS no longer answers its nodes; serving for dns_drain before draining (a second SIGTERM drains now)");
        tokio::select! {
            () = tokio::time::sleep(dns_drain) => tracing::info!("dns_drain over: draining"),
            () = cut_short => tracing::info!("a second signal: dns_drain cut short; draining now"),
        }
    }
}
