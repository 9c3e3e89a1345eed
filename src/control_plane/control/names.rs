//! DNS names of `host:port` instances: one watcher per name, and the task that applies what they find.
//!
//! Watchers ([`Discovery::watch`]) know nothing of the control plane: they send [`DiscoveryEvent`]s on a channel
//! that one task receives and applies through [`Control::apply_discovery`], as health results are (see
//! [`Control::start_health_checks`]). New addresses are published at once; removed ones get no new requests and
//! their in-flight requests finish. [`Watchers`] owns the watchers' and the receiver's abort handles, so dropping
//! the control plane stops them all. The trade-off: the receiving task holds only a `Weak` to the control plane
//! (no cycle keeps it alive), so it upgrades once per event.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::task::AbortHandle;

use super::publish::probe_address;
use super::{Control, State};
use crate::config::InstanceAddress;
use crate::control_plane::discovery::{Discovery, DiscoveryEvent};

/// Which name a watcher follows: (load balancer, instance id, host).
type WatchKey = (String, String, String);

/// The DNS watchers of `host:port` instances and the task that applies their events. Dropping it stops them all.
#[derive(Default)]
pub(super) struct Watchers {
    by_name: HashMap<WatchKey, AbortHandle>,
    /// Where watchers send their events, and the task receiving them (started with the first watcher).
    receiver: Option<(UnboundedSender<DiscoveryEvent>, AbortHandle)>,
}

impl Watchers {
    /// Stops the watchers of one instance (it was deregistered).
    pub(super) fn stop_instance(&mut self, load_balancer: &str, instance_id: &str) {
        self.by_name.retain(|(lb, id, _), watcher| {
            let gone = lb == load_balancer && id == instance_id;
            if gone {
                watcher.abort();
            }
            !gone
        });
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for watcher in self.by_name.values() {
            watcher.abort();
        }
        if let Some((_, receiver)) = &self.receiver {
            receiver.abort();
        }
    }
}

impl Control {
    /// Starts a DNS watcher for every registered `host:port` instance that has none, and stops the watchers of
    /// instances gone. Needs a tokio runtime.
    pub fn watch_names(self: &Arc<Self>) {
        // DNS discovery events: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        let wanted = watched_names(&state);
        state.watchers.by_name.retain(|key, watcher| {
            let keep = wanted.iter().any(|(k, _)| k == key);
            if !keep {
                watcher.abort();
            }
            keep
        });
        for (key, resolved) in wanted {
            if state.watchers.by_name.contains_key(&key) {
                continue;
            }
            let events = self.discovery_events(&mut state);
            let (lb, id, host) = key.clone();
            let first_wait = self.discovery.min_ttl();
            let task = tokio::spawn(Discovery::watch(
                self.discovery.clone(),
                events,
                lb,
                id,
                host,
                resolved,
                first_wait,
            ));
            state.watchers.by_name.insert(key, task.abort_handle());
        }
    }

    /// Where watchers send their events; the first call starts the task that applies them. Needs a tokio
    /// runtime.
    fn discovery_events(self: &Arc<Self>, state: &mut State) -> UnboundedSender<DiscoveryEvent> {
        if let Some((events, _)) = &state.watchers.receiver {
            return events.clone();
        }
        let (events, mut results) = mpsc::unbounded_channel();
        let control = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some(event) = results.recv().await {
                let Some(control) = control.upgrade() else {
                    return;
                };
                control.apply_discovery(event);
            }
        });
        state.watchers.receiver = Some((events.clone(), task.abort_handle()));
        events
    }

    /// New addresses for a `host:port` instance (DNS discovery): published at once; removed addresses get no new
    /// requests, their in-flight requests finish.
    pub fn apply_discovery(&self, event: DiscoveryEvent) {
        // DNS discovery events: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        let State {
            load_balancers,
            checkers,
            ..
        } = &mut *state;
        let Some(lb) = load_balancers
            .iter_mut()
            .find(|lb| lb.config.name == event.load_balancer)
        else {
            return;
        };
        let config = &lb.config;
        let Some(instance) = lb
            .instances
            .iter_mut()
            .find(|i| *i.id == *event.instance_id)
        else {
            return;
        };
        instance.resolved = event.addresses;
        let probe = probe_address(config, instance);
        if let Some(zones) = checkers.get(&config.name) {
            zones.place(&instance.id, &instance.zone, probe);
        }
        self.publish(&mut state);
    }
}

/// Every registered `host:port` instance's name, with its addresses as last resolved.
fn watched_names(state: &State) -> Vec<(WatchKey, Vec<std::net::IpAddr>)> {
    let mut wanted = Vec::new();
    for lb in &state.load_balancers {
        for instance in &lb.instances {
            if let InstanceAddress::Host { host, .. } = &instance.address {
                let key = (
                    lb.config.name.clone(),
                    instance.id.to_string(),
                    host.clone(),
                );
                wanted.push((key, instance.resolved.clone()));
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::Control;
    use crate::config;
    use crate::control_plane::discovery::{Discovery, DiscoveryEvent};
    use crate::control_plane::health::InstanceHealth;
    use crate::observability::metrics::Metrics;

    const CONFIG: &str = r#"
[discovery]
name_servers = ["127.0.0.1:9"]

[[load_balancer]]
name = "web"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000
[[load_balancer.instance]]
id = "i-dns"
zone = "zone-a"
address = "backend.test:8000"
"#;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A control plane with `i-dns` resolved to 127.0.0.31 and in service; no DNS server is asked.
    fn control() -> Arc<Control> {
        let config = config::parse(CONFIG, std::path::Path::new("<test>")).unwrap();
        let discovery = Arc::new(Discovery::new(&config.discovery).unwrap());
        let resolved = HashMap::from([("i-dns".to_owned(), vec![ip("127.0.0.31")])]);
        let control = Arc::new(Control::new(
            &config,
            &resolved,
            Arc::new(Metrics::new()),
            discovery,
        ));
        assert!(control.force_health("web", "i-dns", InstanceHealth::IN_SERVICE));
        control
    }

    fn routed(control: &Control) -> Vec<SocketAddr> {
        control.with_listeners(|listeners| {
            listeners[0]
                .routes
                .load()
                .candidates
                .iter()
                .map(|target| target.addr)
                .collect()
        })
    }

    #[tokio::test]
    async fn a_discovery_event_moves_the_instance_to_its_new_address() {
        let control = control();
        assert_eq!(routed(&control), ["127.0.0.31:8000".parse().unwrap()]);

        // DNS discovery events: control-plane lock, never taken on the request path (see `Control::state`).
        let events = control.discovery_events(&mut control.lock());
        events
            .send(DiscoveryEvent {
                load_balancer: "web".into(),
                instance_id: "i-dns".into(),
                addresses: vec![ip("127.0.0.32")],
            })
            .unwrap();

        let new: SocketAddr = "127.0.0.32:8000".parse().unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while routed(&control) != [new] {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("still routed to {:?}", routed(&control)));
    }

    #[tokio::test]
    async fn watchers_stop_with_the_control_plane() {
        let control = control();
        let events = control.discovery_events(&mut control.lock());
        drop(control);
        tokio::time::timeout(Duration::from_secs(5), events.closed())
            .await
            .expect("the receiving task stops when the control plane is dropped");
    }
}
