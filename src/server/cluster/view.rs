//! What this process sees of the cluster (issue 16 items 3 and 4): the live members and their views of instance
//! health, read from etcd's `{prefix}/members/` and `{prefix}/health/` folders, published to the control plane
//! (`/status`, DescribeInstanceHealth: `control/members`) and to the DNS responder.
//!
//! Rule: a member is live while its key exists: it lives under the member's lease, so a member that dies
//! (`kill -9`, a lost machine) leaves within `lease_ttl` and one that leaves on purpose at once. Another member's
//! health views count only while it is live. This process is always a live member of its own view, from its own
//! state rather than etcd's, until it has left. The DNS responder answers each load balancer name with the nodes
//! live members serve ([`crate::dns::SharedZone::serve_only`]): this process's own nodes as bound, and every other
//! live member's nodes with a bound listener. The task recomputes when a folder changes, when this process
//! publishes (its nodes may have changed) and when it leaves; DNS queries only read the zone it swaps.
//!
//! Trade-off: while etcd is unreachable the folders keep their last entries (`store/etcd/folder`), so the
//! answers keep the last known members: a member that died meanwhile is answered until etcd is back, which is
//! better than answering nothing but this process. A process that has not read the folders once (it started
//! from its local copy while etcd is down, or in its first 2 s) answers its own nodes only: every address it
//! answers then serves, and the other members' responders still answer theirs; the last members are not kept in
//! the local copy, since a member's key lives only as long as its lease.

use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;

use tokio::sync::watch;

use super::identity::{unsegment, Identity};
use crate::control_plane::control::members::{
    ClusterView, HealthRecord, Leaving, Member, MemberStatus,
};
use crate::control_plane::control::Control;
use crate::control_plane::health::InstanceHealth;
use crate::control_plane::store::{Entries, Mirror};
use crate::dns::{LiveNodes, SharedZone};

/// The other live members and their views, as the folders last said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Others {
    members: Vec<Member>,
    health: HashMap<(String, String), Vec<(String, InstanceHealth)>>,
}

impl Others {
    /// Reads the folders' entries; keys that do not decode are left out (and logged).
    pub(super) fn read(this: &str, members: &Entries, health: &Entries) -> Others {
        let mut others = Others::default();
        for (path, value) in members.iter() {
            match serde_json::from_slice::<Member>(value) {
                Ok(member) if member.node_id == this => {}
                Ok(member) => others.members.push(member),
                Err(error) => {
                    tracing::warn!(key = %path, %error, "cluster: a member key that does not decode is left out");
                }
            }
        }
        others.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        for (path, value) in health.iter() {
            let parts: Vec<String> = path.split('/').map(unsegment).collect();
            let [node_id, lb, id] = parts.as_slice() else {
                continue;
            };
            if !others.members.iter().any(|m| m.node_id == *node_id) {
                continue; // its member is not live (or is this process)
            }
            match serde_json::from_slice::<HealthRecord>(value) {
                Ok(record) => others
                    .health
                    .entry((lb.clone(), id.clone()))
                    .or_default()
                    .push((node_id.clone(), record.health())),
                Err(error) => {
                    tracing::warn!(key = %path, %error, "cluster: a health view that does not decode is left out");
                }
            }
        }
        for views in others.health.values_mut() {
            views.sort_by(|a, b| a.0.cmp(&b.0));
        }
        others
    }
}

/// The view and the live nodes, from the other members and this process (`own`: `None` once it has left).
pub(super) fn view(this: &str, own: Option<Member>, others: &Others) -> (ClusterView, LiveNodes) {
    let mut live = LiveNodes::new();
    let mut members = Vec::new();
    let mut add = |member: Member, this: bool| {
        for node in member.nodes.iter().filter(|n| !n.listeners.is_empty()) {
            live.insert((node.load_balancer.clone(), node.address));
        }
        members.push(MemberStatus { member, this });
    };
    if let Some(own) = own {
        add(own, true);
    }
    for other in &others.members {
        add(other.clone(), false);
    }
    let view = ClusterView {
        this: Some(this.to_owned()),
        members,
        health: others.health.clone(),
    };
    (view, live)
}

/// Everything the view task follows.
pub(super) struct Inputs {
    pub members: Mirror,
    pub health: Mirror,
    pub zone: Option<SharedZone>,
}

/// Publishes the view and the live nodes once (the task does it again at every change).
pub(super) fn publish(
    control: &Control,
    me: &Identity,
    others: &Others,
    zone: Option<&SharedZone>,
) {
    let left = *control.members().watch_leaving().borrow() == Leaving::Left;
    let own = (!left).then(|| me.member(control));
    let (view, live) = view(&me.node_id, own, others);
    if let Some(zone) = zone {
        if zone.serve_only(Some(live.clone())) {
            let mut nodes: Vec<String> = live.iter().map(|(lb, ip)| format!("{lb} {ip}")).collect();
            nodes.sort();
            tracing::info!(?nodes, "cluster: DNS answers the nodes of live members");
        }
    }
    if control.members().view().members != view.members {
        let names: BTreeMap<&str, bool> = view
            .members
            .iter()
            .map(|m| (m.member.node_id.as_str(), m.this))
            .collect();
        tracing::info!(members = ?names.keys().collect::<Vec<_>>(), "cluster: live members");
    }
    control.members().set_view(view);
}

/// The view task (module rule); it ends when the server is gone.
pub(super) async fn follow(control: Weak<Control>, me: Identity, inputs: Inputs) {
    let (mut members, mut health) = (inputs.members.entries(), inputs.health.entries());
    let Some((mut changes, mut leaving)) = control.upgrade().map(|c| {
        let m = c.members();
        (m.watch_changes(), m.watch_leaving())
    }) else {
        return;
    };
    let mut others = Others::default();
    let mut read = true;
    loop {
        if read {
            others = current(&me.node_id, &members, &health).unwrap_or(others);
        }
        let Some(control) = control.upgrade() else {
            return;
        };
        publish(&control, &me, &others, inputs.zone.as_ref());
        drop(control);
        // Which input woke the task, and whether it is still there: any one gone (the server is shutting down)
        // ends the task rather than waking it forever. A folder's change is read again; the others only publish.
        let (open, folder) = tokio::select! {
            changed = members.changed() => (changed.is_ok(), true),
            changed = health.changed() => (changed.is_ok(), true),
            changed = changes.changed() => (changed.is_ok(), false),
            changed = leaving.changed() => (changed.is_ok(), false),
        };
        if !open {
            return;
        }
        read = folder;
    }
}

/// The other members as both folders say now; `None` before both were loaded once.
pub(super) fn current(
    this: &str,
    members: &watch::Receiver<Option<Entries>>,
    health: &watch::Receiver<Option<Entries>>,
) -> Option<Others> {
    let members = members.borrow().clone()?;
    let health = health.borrow().clone()?;
    Some(Others::read(this, &members, &health))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::control_plane::control::members::MemberNode;

    fn member(node_id: &str, address: &str, bound: bool) -> Member {
        let address: std::net::IpAddr = address.parse().unwrap();
        Member {
            node_id: node_id.into(),
            zones: vec![format!("zone-{node_id}")],
            nodes: vec![MemberNode {
                load_balancer: "web".into(),
                zone: format!("zone-{node_id}"),
                address,
                listeners: if bound {
                    vec![std::net::SocketAddr::new(address, 80)]
                } else {
                    Vec::new()
                },
            }],
            admin: "127.0.0.1:9900".into(),
            started_unix_ms: 1,
        }
    }

    fn entries(pairs: Vec<(&str, Vec<u8>)>) -> Entries {
        Arc::new(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    #[test]
    fn live_members_nodes_and_views_are_read_and_a_dead_members_views_are_not() {
        let members = entries(vec![
            ("b", json(&member("b", "127.0.0.2", true))),
            ("c", json(&member("c", "127.0.0.3", false))),
            ("a", json(&member("a", "127.0.0.9", true))),
            ("broken", b"{".to_vec()),
        ]);
        let out = HealthRecord::of(&InstanceHealth::FAILED_UNHEALTHY_THRESHOLD);
        let health = entries(vec![
            ("b/web/i%2F1", json(&out)),
            ("dead/web/i%2F1", json(&out)),
            ("a/web/i%2F1", json(&out)),
        ]);
        let others = Others::read("a", &members, &health);
        let ids: Vec<&str> = others.members.iter().map(|m| m.node_id.as_str()).collect();
        assert_eq!(
            ids,
            ["b", "c"],
            "this process's own key and a broken one are not others"
        );
        assert_eq!(
            others.health[&("web".to_owned(), "i/1".to_owned())],
            [("b".to_owned(), InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)],
            "only live other members' views"
        );

        let (view, live) = view("a", Some(member("a", "127.0.0.1", true)), &others);
        assert_eq!(view.members.len(), 3);
        assert!(view.members[0].this);
        let mut nodes: Vec<String> = live.iter().map(|(_, ip)| ip.to_string()).collect();
        nodes.sort();
        assert_eq!(nodes, ["127.0.0.1", "127.0.0.2"], "c bound no listener");

        let (view, live) = self::view("a", None, &others);
        assert!(view.members.iter().all(|m| !m.this), "left: not a member");
        assert!(!live.iter().any(|(_, ip)| ip.to_string() == "127.0.0.1"));
    }
}
