//! The store's contract, run over both stores; the embedded store's durability, locking and errors; the record
//! format; and how records combine with the configuration file.

use std::sync::Arc;

use super::*;
use crate::config::{self, InstanceAddress};

pub(super) fn registered(lb: &str, id: &str, address: &str) -> Record {
    Record::Registration(Registration {
        load_balancer: lb.into(),
        instance_id: id.into(),
        state: RegistrationState::Registered {
            zone: "zone-a".into(),
            address: address.parse().unwrap(),
        },
    })
}

pub(super) fn deregistered(lb: &str, id: &str) -> Record {
    Record::Registration(Registration::deregistered(lb, id))
}

fn at(revision: u64, record: Record) -> Versioned {
    Versioned {
        revision: Revision(revision),
        record,
    }
}

fn sorted(mut contents: Contents) -> Contents {
    contents.records.sort_by_key(|v| v.record.key());
    contents
}

/// What every store must do: one revision per batch, carried by every record it writes; deletes forget. Revisions
/// count from the store's own start (0 for the embedded and memory stores, etcd's first revision for etcd's).
pub(super) async fn contract(store: &dyn StateStore) {
    let start = store.load().await.unwrap();
    assert!(start.records.is_empty(), "{start:?}");
    let rev = |n: u64| Revision(start.revision.0 + n);
    let at = |n: u64, record: Record| at(start.revision.0 + n, record);
    let (a, b) = (
        registered("web", "i-a", "127.0.0.1:8001"),
        registered("web", "i-b", "127.0.0.1:8002"),
    );
    let first = store
        .apply(vec![Change::Put(a.clone()), Change::Put(b.clone())])
        .await
        .unwrap();
    assert_eq!(first, rev(1));
    let a2 = deregistered("web", "i-a");
    assert_eq!(
        store.apply(vec![Change::Put(a2.clone())]).await.unwrap(),
        rev(2)
    );
    assert_eq!(
        sorted(store.load().await.unwrap()),
        Contents {
            revision: rev(2),
            records: vec![at(2, a2.clone()), at(1, b.clone())],
        }
    );
    let gone = store
        .apply(vec![
            Change::Delete(b.key()),
            Change::Delete(deregistered("x", "y").key()),
        ])
        .await
        .unwrap();
    assert_eq!(gone, rev(3));
    assert_eq!(
        store.load().await.unwrap(),
        Contents {
            revision: rev(3),
            records: vec![at(2, a2)],
        }
    );
}

/// What a guard means in every store: "only if the key is still at this revision (or absent)"; a failed guard
/// writes nothing and names the key.
pub(super) async fn guards(store: &dyn StateStore) {
    let (a, gone) = (
        registered("web", "i-a", "127.0.0.1:8001"),
        deregistered("web", "i-a"),
    );
    let absent = Guard::unchanged(a.key(), None);
    let first = store
        .apply_guarded(vec![absent.clone()], vec![Change::Put(a.clone())])
        .await
        .unwrap();
    let refused = store
        .apply_guarded(vec![absent], vec![Change::Put(gone.clone())])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict { key } if key == "registrations/web/i-a"),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .contains("registrations/web/i-a changed"),
        "{refused}"
    );
    let held = at(first.0, a.clone());
    let unchanged = Guard::unchanged(a.key(), Some(&held));
    let second = store
        .apply_guarded(vec![unchanged.clone()], vec![Change::Put(gone.clone())])
        .await
        .unwrap();
    assert!(second > first);
    let stale = store
        .apply_guarded(vec![unchanged], vec![Change::Delete(a.key())])
        .await
        .unwrap_err();
    assert!(stale.is_conflict(), "{stale:?}");
    let contents = store.load().await.unwrap();
    assert_eq!(
        contents.records,
        vec![at(second.0, gone)],
        "the refused writes wrote nothing"
    );
}

#[tokio::test]
async fn the_single_writer_stores_keep_guards_by_comparing_what_they_hold() {
    guards(&MemoryStore::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    guards(&store).await;
    store.close().await;
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    let store = MemoryStore::default();
    assert_eq!(store.load().await.unwrap(), Contents::default());
    contract(&store).await;
}

#[tokio::test]
async fn the_embedded_store_keeps_the_contract_and_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = EmbeddedStore::open(&state).await.unwrap();
    contract(&store).await;
    let before = store.load().await.unwrap();
    store.close().await;

    let store = EmbeddedStore::open(&state).await.unwrap();
    assert_eq!(
        store.load().await.unwrap(),
        before,
        "the same after reopening"
    );
    let next = store
        .apply(vec![Change::Put(registered(
            "web",
            "i-c",
            "127.0.0.1:8003",
        ))])
        .await
        .unwrap();
    assert_eq!(next, Revision(4), "the revision goes on from where it was");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the folder is elbe's alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_each_get_their_own_revision_and_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let started = tokio::time::Instant::now();
    let writes: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let record = registered("web", &format!("i-{n}"), "127.0.0.1:8000");
                store.apply(vec![Change::Put(record)]).await.unwrap()
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for write in writes {
        revisions.push(write.await.unwrap().0);
    }
    let elapsed = started.elapsed();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=200).collect::<Vec<u64>>());
    println!("200 concurrent writes in {elapsed:?} (group commit)");
    let Ok(store) = Arc::try_unwrap(store) else {
        panic!("the store is still shared")
    };
    store.close().await;
    let read = EmbeddedStore::read(dir.path()).unwrap().unwrap();
    assert_eq!(read.revision, Revision(200));
    assert_eq!(read.records.len(), 200);
}

#[tokio::test]
async fn a_second_writer_is_refused_and_names_the_file_while_readers_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    store
        .apply(vec![Change::Put(registered(
            "web",
            "i-a",
            "127.0.0.1:8001",
        ))])
        .await
        .unwrap();

    let error = EmbeddedStore::open(dir.path()).await.err().unwrap();
    assert!(error.is_locked(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("store.redb"), "{message}");
    assert!(message.contains("another process has it open"), "{message}");

    let read = EmbeddedStore::read(dir.path()).unwrap().unwrap();
    assert_eq!(
        read.records.len(),
        1,
        "a reader beside the writer sees its commits"
    );
    store.close().await;
    assert!(
        EmbeddedStore::open(dir.path()).await.is_ok(),
        "closing releases the lock"
    );
}

#[tokio::test]
async fn no_store_yet_reads_as_none_and_a_folder_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(EmbeddedStore::read(&dir.path().join("none")).unwrap(), None);
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let error = EmbeddedStore::open(&file.join("state"))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("a-file"), "{error}");
}

/// Writes `value` under `key` in `table` of the closed store in `dir`, as something other than elbe would.
fn tamper<V: redb::Value + 'static>(
    dir: &std::path::Path,
    table: &str,
    key: &str,
    value: V::SelfType<'_>,
) {
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(embedded_file(dir))
        .unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, V>::new(table))
        .unwrap()
        .insert(key, value)
        .unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_newer_format_or_a_damaged_record_is_an_error_that_says_which() {
    let dir = tempfile::tempdir().unwrap();
    EmbeddedStore::open(dir.path()).await.unwrap().close().await;
    tamper::<&[u8]>(dir.path(), "records", "registrations/web/i-x", b"{not json");
    let error = EmbeddedStore::read(dir.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("record registrations/web/i-x does not read"),
        "{error}"
    );

    let newer = tempfile::tempdir().unwrap();
    EmbeddedStore::open(newer.path())
        .await
        .unwrap()
        .close()
        .await;
    tamper::<u64>(newer.path(), "meta", "format", 99);
    let error = EmbeddedStore::open(newer.path()).await.err().unwrap();
    assert!(
        matches!(error, StoreError::Format { found: 99, .. }),
        "{error:?}"
    );
    assert!(EmbeddedStore::read(newer.path()).is_err());
}

#[test]
fn records_are_kept_as_this_json() {
    let registered = at(7, registered("web", "i-a", "10.0.0.1:8000"));
    let text = serde_json::to_string(&registered).unwrap();
    assert_eq!(
        text,
        r#"{"revision":7,"kind":"registration","load_balancer":"web","instance_id":"i-a","state":"registered","zone":"zone-a","address":"10.0.0.1:8000"}"#
    );
    assert_eq!(
        serde_json::from_str::<Versioned>(&text).unwrap(),
        registered
    );
    let tombstone = at(8, deregistered("web", "i-b"));
    let text = serde_json::to_string(&tombstone).unwrap();
    assert_eq!(
        text,
        r#"{"revision":8,"kind":"registration","load_balancer":"web","instance_id":"i-b","state":"deregistered"}"#
    );
    assert_eq!(serde_json::from_str::<Versioned>(&text).unwrap(), tombstone);
    let bad = r#"{"revision":1,"kind":"registration","load_balancer":"web","instance_id":"i","state":"registered","zone":"z","address":"nonsense"}"#;
    assert!(
        serde_json::from_str::<Versioned>(bad).is_err(),
        "addresses parse as the file's do"
    );
}

#[test]
fn keys_are_paths_that_no_two_records_share() {
    assert_eq!(
        deregistered("web", "i-1").key().to_string(),
        "registrations/web/i-1"
    );
    assert_eq!(
        deregistered("web", "a/b%").key().to_string(),
        "registrations/web/a%2Fb%25"
    );
    assert_ne!(
        deregistered("a/b", "c").key().to_string(),
        deregistered("a", "b/c").key().to_string()
    );
}

#[test]
fn an_older_write_of_a_key_is_not_taken_after_a_newer_one() {
    let mut records = Records::default();
    assert!(records.take(at(5, deregistered("web", "i-a"))));
    assert!(!records.take(at(4, registered("web", "i-a", "127.0.0.1:1"))));
    assert!(
        records.take(at(5, deregistered("web", "i-a"))),
        "the same write again"
    );
    assert!(records.take(at(6, registered("web", "i-a", "127.0.0.1:1"))));
    let key = deregistered("web", "i-a").key();
    assert_eq!(records.get(&key).map(|v| v.revision), Some(Revision(6)));
}

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
[[load_balancer.instance]]
id = "i-moved"
zone = "zone-a"
address = "127.0.0.1:9002"
"#;

#[test]
fn records_lay_over_the_file_and_those_of_unknown_load_balancers_are_ignored() {
    let config = config::parse(CONFIG, std::path::Path::new("<test>")).unwrap();
    let records = Records::from_contents(Contents {
        revision: Revision(4),
        records: vec![
            at(3, registered("web", "i-new", "127.0.0.1:9003")),
            at(1, deregistered("web", "i-file")),
            at(2, registered("web", "i-moved", "127.0.0.1:9004")),
            at(4, registered("gone", "i-x", "127.0.0.1:9005")),
        ],
    });
    let overlaid = records.overlay(&config);
    let instances: Vec<(&str, String)> = overlaid.config.load_balancers[0]
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i.address.to_string()))
        .collect();
    assert_eq!(
        instances,
        [
            ("i-moved", "127.0.0.1:9004".to_string()),
            ("i-new", "127.0.0.1:9003".to_string())
        ]
    );
    assert_eq!(overlaid.ignored, ["gone"]);
    assert!(matches!(
        overlaid.config.load_balancers[0].instances[1].address,
        InstanceAddress::Socket(_)
    ));
}

#[test]
fn load_balancer_records_add_replace_and_delete_what_the_file_declares() {
    use super::definitions::*;
    let config = config::parse(CONFIG, std::path::Path::new("<test>")).unwrap();
    let created = |name: &str| {
        Record::LoadBalancer(LoadBalancerRecord {
            name: name.into(),
            state: LoadBalancerState::Created {
                created_ms: 1,
                scheme: "internal".into(),
            },
        })
    };
    let listener = |lb: &str, port: u16, state: ListenerState| {
        Record::Listener(ListenerRecord {
            load_balancer: lb.into(),
            load_balancer_port: port,
            state,
        })
    };
    let tcp = ListenerState::Defined(ListenerDefinition {
        protocol: config::Protocol::Tcp,
        instance_protocol: config::Protocol::Tcp,
        instance_port: 5432,
        certificate_id: None,
    });
    let records = Records::from_contents(Contents {
        revision: Revision(6),
        records: vec![
            at(1, created("shop")),
            at(
                1,
                Record::Zones(Zones {
                    load_balancer: "shop".into(),
                    zones: vec![ZoneNode {
                        name: "zone-a".into(),
                        node: "127.0.1.1".parse().unwrap(),
                    }],
                }),
            ),
            at(1, listener("shop", 5432, tcp.clone())),
            at(
                2,
                Record::Attributes(Attributes {
                    load_balancer: "shop".into(),
                    idle_timeout: Some(5),
                    ..Attributes::default()
                }),
            ),
            at(3, listener("web", 0, ListenerState::Deleted)),
            at(4, listener("web", 6000, tcp)),
            at(5, registered("shop", "i-new", "127.0.0.1:9003")),
            at(
                6,
                listener(
                    "shop",
                    443,
                    ListenerState::Defined(ListenerDefinition {
                        protocol: config::Protocol::Https,
                        instance_protocol: config::Protocol::Http,
                        instance_port: 80,
                        certificate_id: Some("arn:gone".into()),
                    }),
                ),
            ),
        ],
    });
    let overlaid = records.overlay(&config);
    let names: Vec<&str> = overlaid
        .config
        .load_balancers
        .iter()
        .map(|lb| lb.name.as_str())
        .collect();
    assert_eq!(names, ["web", "shop"]);
    let shop = &overlaid.config.load_balancers[1];
    assert_eq!(shop.availability_zones[0].node.to_string(), "127.0.1.1");
    assert_eq!(shop.listeners.len(), 1);
    assert_eq!(shop.listeners[0].load_balancer_port, 5432);
    assert_eq!(shop.idle_timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        shop.connection_draining.timeout,
        std::time::Duration::from_secs(300),
        "ELB's default"
    );
    assert_eq!(shop.instances[0].id, "i-new");
    let web = &overlaid.config.load_balancers[0];
    let ports: Vec<u16> = web.listeners.iter().map(|l| l.load_balancer_port).collect();
    assert_eq!(
        ports,
        [6000],
        "the file's port-0 listener deleted, the API's added"
    );
    assert_eq!(web.instances.len(), 2, "the file's instances stay");
    assert!(overlaid.ignored.is_empty());
    assert_eq!(
        overlaid.unusable.len(),
        1,
        "the listener whose certificate is gone: {:?}",
        overlaid.unusable
    );

    // A tombstone removes the file's load balancer; a later creation of the name starts from the defaults.
    let records = Records::from_contents(Contents {
        revision: Revision(2),
        records: vec![at(
            1,
            Record::LoadBalancer(LoadBalancerRecord {
                name: "web".into(),
                state: LoadBalancerState::Deleted,
            }),
        )],
    });
    assert!(records.overlay(&config).config.load_balancers.is_empty());
    let records = Records::from_contents(Contents {
        revision: Revision(2),
        records: vec![at(2, created("web"))],
    });
    let web = &records.overlay(&config).config.load_balancers[0];
    assert!(
        web.listeners.is_empty() && web.instances.is_empty(),
        "{web:?}"
    );
    assert_eq!(
        Key::Listener {
            load_balancer: "a/b".into(),
            port: 80
        }
        .to_string(),
        "listeners/a%2Fb/80"
    );
}
