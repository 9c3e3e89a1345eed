//! The cluster as this process sees it (DESIGN.md "The state store", issue 16 items 3 and 4): its live members and
//! each one's view of instance health, as the cluster's tasks (`server/cluster`) last read them from etcd, and the
//! rule that reports an instance's health across them.
//!
//! Rule: each elbe process is one ELB node (or a few) and health-checks on its own, as ELB's nodes do, so an
//! instance has one view per member. DescribeInstanceHealth and `/status` report the worst among live members:
//! this process's own state when it says OutOfService (ELB's text, unchanged), else the first other member (by
//! node id) that says OutOfService, with its reason and description and its name ([`Reported::member`]), else
//! InService. So `aws elb wait instance-in-service` returns once every member routes to the instance. An instance
//! draining after its deregistration reports the drain (ELB-SPEC §2.2), as every member applies the same
//! deregistration. Without `[cluster]` the view is empty and everything reports this process's own state.
//!
//! The cluster's tasks learn that something here changed (a node bound, an instance registered, a health state
//! flipped) from [`Members::changed`], which every publish calls: a counter on a `watch` channel, so a burst of
//! changes wakes them once and they read the state they need when they run, off the health-check path.
//!
//! Trade-off: another member's view arrives as JSON text and is mapped back onto ELB's known states (the
//! `InstanceHealth` constants); a description this version does not know (a newer member's) is reported as the
//! known state with its State and ReasonCode, rather than carried as free text through every report.

// Only the cluster's tasks (feature `cluster`) publish a view, write views and leave; without the feature the view
// stays empty and everything reports this process's own state.
#![cfg_attr(not(feature = "cluster"), allow(dead_code))]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::{Control, InstanceHealth};

/// What the control plane keeps of the cluster: the view the cluster's tasks publish, and the signal they wait
/// on.
pub(crate) struct Members {
    view: ArcSwap<ClusterView>,
    /// Bumped at every publish.
    local: tokio::sync::watch::Sender<u64>,
    /// Whether this process is leaving the cluster (SIGTERM).
    leaving: tokio::sync::watch::Sender<Leaving>,
}

/// Where this process is in leaving the cluster on purpose (SIGTERM; `server/cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    Staying,
    /// Asked to leave: its lease is being revoked.
    Asked,
    /// Its member key and views are gone from etcd (or could not be deleted: they expire with the lease);
    /// its own DNS answers no longer name its nodes.
    Left,
}

impl Default for Members {
    fn default() -> Members {
        Members {
            view: ArcSwap::from_pointee(ClusterView::default()),
            local: tokio::sync::watch::Sender::new(0),
            leaving: tokio::sync::watch::Sender::new(Leaving::Staying),
        }
    }
}

impl Members {
    /// The cluster as last seen.
    pub(crate) fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    /// Publishes what the cluster's watch task saw.
    pub(crate) fn set_view(&self, view: ClusterView) {
        self.view.store(Arc::new(view));
    }

    /// Something this process serves or reports changed (nodes, registrations, health).
    pub(crate) fn changed(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes whenever [`Members::changed`] was called since it last woke.
    pub(crate) fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.local.subscribe()
    }

    /// Moves this process on in leaving the cluster (never back).
    pub(crate) fn set_leaving(&self, to: Leaving) {
        self.leaving.send_if_modified(|now| {
            let forward = matches!(
                (*now, to),
                (Leaving::Staying, Leaving::Asked | Leaving::Left)
                    | (Leaving::Asked, Leaving::Left)
            );
            if forward {
                *now = to;
            }
            forward
        });
    }

    /// Where this process is in leaving, and a receiver that wakes when that moves on.
    pub(crate) fn watch_leaving(&self) -> tokio::sync::watch::Receiver<Leaving> {
        self.leaving.subscribe()
    }
}

/// The cluster's members and their views of instance health, as one snapshot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ClusterView {
    /// This process's `node_id`; `None` outside cluster mode.
    pub this: Option<String>,
    /// Every live member, this process first while it has not left.
    pub members: Vec<MemberStatus>,
    /// The other live members' views, by (load balancer, instance id), in node id order.
    pub health: HashMap<(String, String), Vec<(String, InstanceHealth)>>,
}

/// An instance's health as reported across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reported {
    pub health: InstanceHealth,
    /// The member whose view `health` is, when it is another member's.
    pub member: Option<String>,
    /// Every live member's state for the instance, this process's included (empty outside cluster mode).
    pub views: BTreeMap<String, &'static str>,
}

impl ClusterView {
    /// The health to report for instance `id` of `load_balancer`, whose state here is `own` (module rule).
    pub(crate) fn report(
        &self,
        load_balancer: &str,
        id: &str,
        own: &InstanceHealth,
        draining: bool,
    ) -> Reported {
        let mut reported = Reported {
            health: own.clone(),
            member: None,
            views: BTreeMap::new(),
        };
        let Some(this) = &self.this else {
            return reported;
        };
        reported.views.insert(this.clone(), own.state);
        let key = (load_balancer.to_owned(), id.to_owned());
        let others = self.health.get(&key).map_or(&[][..], Vec::as_slice);
        for (member, health) in others {
            reported.views.insert(member.clone(), health.state);
        }
        if draining || !own.in_service() {
            return reported;
        }
        if let Some((member, health)) = others.iter().find(|(_, h)| !h.in_service()) {
            reported.health = health.clone();
            reported.member = Some(member.clone());
        }
        reported
    }
}

/// One member of the cluster as its key in etcd holds it (`{prefix}/members/{node_id}`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `[cluster] node_id`.
    pub node_id: String,
    /// `[cluster] zones`: the zones whose nodes it runs.
    pub zones: Vec<String>,
    /// The nodes it serves, as it bound them.
    pub nodes: Vec<MemberNode>,
    /// Its admin listener (`/status`, the ELB API).
    pub admin: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// One node a member serves: a load balancer's node in one zone, with the listeners it bound there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberNode {
    /// The load balancer.
    pub load_balancer: String,
    /// The availability zone.
    pub zone: String,
    /// The node's address: what the load balancer's DNS name answers.
    pub address: IpAddr,
    /// The listeners bound on it (port 0 resolved).
    pub listeners: Vec<SocketAddr>,
}

/// One live member, as `/status` lists it under `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// What the member wrote.
    #[serde(flatten)]
    pub member: Member,
    /// Whether it is the process answering.
    pub this: bool,
}

/// A member's view of one instance as its key in etcd holds it (`{prefix}/health/{node_id}/{lb}/{id}`, JSON):
/// DescribeInstanceHealth's three strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthRecord {
    pub state: String,
    pub reason_code: String,
    pub description: String,
}

/// Every state DescribeInstanceHealth reports, for reading other members' views back.
const KNOWN: [InstanceHealth; 7] = [
    InstanceHealth::IN_SERVICE,
    InstanceHealth::REGISTRATION_IN_PROGRESS,
    InstanceHealth::FAILED_UNHEALTHY_THRESHOLD,
    InstanceHealth::NOT_YET_HEALTHY_THRESHOLD,
    InstanceHealth::ZONE_NOT_ENABLED,
    InstanceHealth::DEREGISTRATION_IN_PROGRESS,
    InstanceHealth::NOT_REGISTERED,
];

impl HealthRecord {
    /// The record of `health`.
    pub(crate) fn of(health: &InstanceHealth) -> HealthRecord {
        HealthRecord {
            state: health.state.to_owned(),
            reason_code: health.reason_code.to_owned(),
            description: health.description.to_owned(),
        }
    }

    /// The known state this record says (module trade-off: an unknown description keeps State and ReasonCode).
    pub(crate) fn health(&self) -> InstanceHealth {
        let same = |h: &&InstanceHealth| h.state == self.state && h.reason_code == self.reason_code;
        KNOWN
            .iter()
            .filter(same)
            .find(|h| h.description == self.description)
            .or_else(|| KNOWN.iter().find(same))
            .cloned()
            .unwrap_or(if self.state == InstanceHealth::IN_SERVICE.state {
                InstanceHealth::IN_SERVICE
            } else {
                InstanceHealth::FAILED_UNHEALTHY_THRESHOLD
            })
    }
}

impl Control {
    /// The cluster as this process sees it.
    pub(crate) fn members(&self) -> &Members {
        &self.members
    }

    /// Every registered instance's health as this process's own checks have it: (load balancer, instance id,
    /// health).
    pub(crate) fn own_health(&self) -> Vec<(String, String, InstanceHealth)> {
        // the cluster's health writer, off the check path: control-plane lock (see `Control::state`).
        let state = self.lock();
        state
            .load_balancers
            .iter()
            .flat_map(|lb| {
                lb.instances
                    .iter()
                    .map(|i| (lb.config.name.clone(), i.id.to_string(), i.health.clone()))
            })
            .collect()
    }

    /// The nodes this process serves: every node listener bound, grouped by load balancer, zone and address.
    pub(crate) fn bound_nodes(&self) -> Vec<MemberNode> {
        // the cluster's tasks, off the request path: control-plane lock (see `Control::state`).
        let state = self.lock();
        let mut nodes: BTreeMap<(String, String, IpAddr), Vec<SocketAddr>> = BTreeMap::new();
        for listener in &state.listeners {
            if let Some(bound) = listener.bound {
                let key = (
                    listener.load_balancer.to_string(),
                    listener.zone.to_string(),
                    listener.node,
                );
                nodes.entry(key).or_default().push(bound);
            }
        }
        nodes
            .into_iter()
            .map(|((load_balancer, zone, address), listeners)| MemberNode {
                load_balancer,
                zone,
                address,
                listeners,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(others: Vec<(&str, InstanceHealth)>) -> ClusterView {
        let others = others
            .into_iter()
            .map(|(member, health)| (member.to_owned(), health))
            .collect();
        ClusterView {
            this: Some("lb-1a".into()),
            members: Vec::new(),
            health: HashMap::from([(("web".to_owned(), "i-1".to_owned()), others)]),
        }
    }

    #[test]
    fn the_worst_state_among_live_members_is_reported_naming_the_member() {
        let report =
            |view: &ClusterView, own: &InstanceHealth| view.report("web", "i-1", own, false);
        let disagree = view(vec![
            ("lb-1b", InstanceHealth::IN_SERVICE),
            ("lb-1c", InstanceHealth::FAILED_UNHEALTHY_THRESHOLD),
        ]);
        let reported = report(&disagree, &InstanceHealth::IN_SERVICE);
        assert_eq!(reported.health, InstanceHealth::FAILED_UNHEALTHY_THRESHOLD);
        assert_eq!(reported.member.as_deref(), Some("lb-1c"));
        assert_eq!(
            reported.views,
            BTreeMap::from([
                ("lb-1a".to_owned(), "InService"),
                ("lb-1b".to_owned(), "InService"),
                ("lb-1c".to_owned(), "OutOfService"),
            ])
        );
        // This process's own OutOfService comes first, in ELB's words.
        let own = report(&disagree, &InstanceHealth::NOT_YET_HEALTHY_THRESHOLD);
        assert_eq!(own.health, InstanceHealth::NOT_YET_HEALTHY_THRESHOLD);
        assert_eq!(own.member, None);
        // All agree: InService.
        let agree = view(vec![("lb-1b", InstanceHealth::IN_SERVICE)]);
        assert_eq!(
            report(&agree, &InstanceHealth::IN_SERVICE).health,
            InstanceHealth::IN_SERVICE
        );
        // A drain is reported as the drain.
        let draining = disagree.report(
            "web",
            "i-1",
            &InstanceHealth::DEREGISTRATION_IN_PROGRESS,
            true,
        );
        assert_eq!(draining.health, InstanceHealth::DEREGISTRATION_IN_PROGRESS);
    }

    #[test]
    fn outside_cluster_mode_this_process_alone_reports() {
        let reported =
            ClusterView::default().report("web", "i-1", &InstanceHealth::IN_SERVICE, false);
        assert_eq!(reported.health, InstanceHealth::IN_SERVICE);
        assert!(reported.views.is_empty());
    }

    #[test]
    fn health_records_read_back_as_the_known_states() {
        for known in KNOWN {
            let json = serde_json::to_string(&HealthRecord::of(&known)).unwrap();
            let back: HealthRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back.health(), known);
        }
        let newer = HealthRecord {
            state: "OutOfService".into(),
            reason_code: "ELB".into(),
            description: "Something a newer elbe says.".into(),
        };
        assert_eq!(newer.health().state, "OutOfService");
        assert_eq!(newer.health().reason_code, "ELB");
    }
}
