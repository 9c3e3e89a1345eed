//! The control plane's registrations and health events, against stores that fail or race.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::control_plane::discovery::Discovery;
use crate::control_plane::store::{
    Contents, MemoryStore, Records, Revision, StateStore, StoreError, StoreFuture,
};
use crate::observability::metrics::Metrics;

const CONFIG: &str = r#"
[admin]
listen = "127.0.0.1:0"
[[load_balancer]]
name = "web"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 0
instance_protocol = "HTTP"
instance_port = 8000
[[load_balancer.instance]]
id = "i-file"
zone = "zone-a"
address = "127.0.0.1:9001"
"#;

/// A store whose disk is full: every write fails.
struct FullDisk;

impl StateStore for FullDisk {
    fn load(&self) -> StoreFuture<'_, Contents> {
        Box::pin(async { Ok(Contents::default()) })
    }

    fn apply(&self, _: Vec<Change>) -> StoreFuture<'_, Revision> {
        Box::pin(async {
            Err(StoreError::Write {
                path: "/full/store.redb".into(),
                source: Arc::new(std::io::Error::other("No space left on device")),
            })
        })
    }
}

fn config() -> config::Config {
    config::parse(CONFIG, std::path::Path::new("<test>")).unwrap()
}

fn control(store: Arc<dyn StateStore>) -> Arc<Control> {
    let config = config();
    let discovery = Arc::new(Discovery::new(&config.discovery).unwrap());
    Arc::new(Control::with_store(
        &config,
        &HashMap::new(),
        Arc::new(Metrics::new()),
        discovery,
        store,
        Records::default(),
    ))
}

fn instances(control: &Control) -> Vec<String> {
    control.status(None).load_balancers[0]
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect()
}

fn instance(id: &str, address: &str) -> config::Instance {
    config::Instance {
        id: id.into(),
        zone: "zone-a".into(),
        address: address.parse().unwrap(),
    }
}

#[tokio::test]
async fn a_change_the_store_cannot_keep_is_refused_and_changes_nothing() {
    let control = control(Arc::new(FullDisk));
    let error = control
        .register("web", instance("i-new", "127.0.0.1:9002"))
        .await
        .unwrap_err();
    assert!(matches!(error, ControlError::Store(_)), "{error:?}");
    assert!(error.to_string().contains("No space left"), "{error}");
    let error = control.deregister("web", "i-file").await.unwrap_err();
    assert!(matches!(error, ControlError::Store(_)), "{error:?}");
    assert_eq!(instances(&control), ["i-file"], "nothing changed");

    // Refusals that need no write come first: nothing is written for them.
    let error = control
        .register("nope", instance("i-new", "127.0.0.1:9002"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ControlError::LoadBalancerNotFound(_)),
        "{error:?}"
    );
    assert!(!control.deregister("web", "i-never").await.unwrap());
}

#[tokio::test]
async fn changes_are_kept_once_and_survive_a_reload_of_the_same_file() {
    let store = Arc::new(MemoryStore::default());
    let control = control(store.clone());
    control
        .register("web", instance("i-new", "127.0.0.1:9002"))
        .await
        .unwrap();
    assert!(control.deregister("web", "i-file").await.unwrap());
    assert_eq!(instances(&control), ["i-new"]);
    // Registering again what is registered writes nothing.
    control
        .register("web", instance("i-new", "127.0.0.1:9002"))
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap().revision, Revision(2));

    control.reload(&config(), &HashMap::new(), &HashMap::new(), true);
    assert_eq!(
        instances(&control),
        ["i-new"],
        "the file's i-file stays deregistered, the registered i-new stays"
    );
}

#[tokio::test]
async fn several_instances_are_one_write_all_or_none() {
    let store = Arc::new(MemoryStore::default());
    let control = control(store.clone());
    let pair = vec![
        instance("i-1", "127.0.0.1:9101"),
        instance("i-2", "127.0.0.1:9102"),
    ];
    control.register_all("web", pair).await.unwrap();
    assert_eq!(
        store.load().await.unwrap().revision,
        Revision(1),
        "one batch"
    );
    assert_eq!(instances(&control), ["i-file", "i-1", "i-2"]);
    let ids = ["i-1".to_owned(), "i-2".to_owned(), "i-never".to_owned()];
    assert_eq!(control.deregister_all("web", &ids).await.unwrap(), 2);
    assert_eq!(
        store.load().await.unwrap().revision,
        Revision(2),
        "one batch"
    );
    assert_eq!(instances(&control), ["i-file"]);

    // A write that fails registers none of them.
    let control = self::control(Arc::new(FullDisk));
    let pair = vec![
        instance("i-1", "127.0.0.1:9101"),
        instance("i-2", "127.0.0.1:9102"),
    ];
    assert!(control.register_all("web", pair).await.is_err());
    assert_eq!(instances(&control), ["i-file"]);
}

/// One batch, as the checker's task hands it over: the first event is found by a scan, the rest through the
/// batch's index; events for an instance that is gone, or that was checked at an address it no longer has, change
/// nothing.
#[tokio::test]
async fn a_batch_of_health_events_reaches_each_its_own_instance() {
    let control = control(Arc::new(MemoryStore::default()));
    for n in 2..=6 {
        let address = format!("127.0.0.1:900{n}");
        control
            .register("web", instance(&format!("i-{n}"), &address))
            .await
            .unwrap();
    }
    let probes: HashMap<String, SocketAddr> = {
        let state = control.lock();
        let lb = &state.load_balancers[0];
        lb.instances
            .iter()
            .filter_map(|i| Some((i.id.to_string(), probe_address(&lb.config, i)?)))
            .collect()
    };
    let event = |id: &str, health: InstanceHealth| HealthEvent {
        instance_id: id.into(),
        addr: probes[id],
        health,
    };
    let gone = HealthEvent {
        instance_id: "i-gone".into(),
        ..event("i-2", InstanceHealth::IN_SERVICE)
    };
    let moved = HealthEvent {
        addr: "127.0.0.1:1".parse().unwrap(),
        ..event("i-4", InstanceHealth::IN_SERVICE)
    };
    control.apply_health(
        "web",
        [
            event("i-5", InstanceHealth::IN_SERVICE),
            event("i-file", InstanceHealth::IN_SERVICE),
            gone,
            moved,
            event("i-2", InstanceHealth::FAILED_UNHEALTHY_THRESHOLD),
            event("i-6", InstanceHealth::IN_SERVICE),
        ],
    );
    let status = control.status(None);
    let states: Vec<(&str, &str, &str)> = status.load_balancers[0]
        .instances
        .iter()
        .map(|i| (&*i.instance_id, i.state, i.reason_code))
        .collect();
    assert_eq!(
        states,
        [
            ("i-file", "InService", "N/A"),
            ("i-2", "OutOfService", "Instance"),
            ("i-3", "OutOfService", "ELB"),
            ("i-4", "OutOfService", "ELB"),
            ("i-5", "InService", "N/A"),
            ("i-6", "InService", "N/A"),
        ]
    );
    assert_eq!(
        status.recent_changes.len(),
        4,
        "{:?}",
        status.recent_changes
    );
}
