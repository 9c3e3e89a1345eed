//! The etcd store against a real etcd (Debian's `etcd-server`, started per test on free loopback ports with its
//! own data directory, `tests/etcd_support`): the store contract and guards every store keeps, compare-and-swap
//! between two clients, the watch across `kill -9` and restart, compaction and a replaced etcd, and a write
//! while etcd is down.

#[path = "../../../../tests/etcd_support/mod.rs"]
mod etcd_support;

use std::time::Duration;

use etcd_support::Etcd;
use tokio::time::{timeout, Instant};

use super::super::tests::{contract, deregistered, guards, registered};
use super::super::{Change, Guard, Record, Revision, StateStore, StoreError, Versioned};
use super::{EtcdStore, Watch, WatchBatch, WatchChange, WatchEvent, REQUEST_TIMEOUT};

/// How long a test waits for a watched change (they arrive in milliseconds).
const ARRIVES_WITHIN: Duration = Duration::from_secs(10);

async fn store(etcd: &Etcd, prefix: &str) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()], prefix)
        .await
        .unwrap()
}

fn put(lb: &str, id: &str) -> Change {
    Change::Put(registered(lb, id, "127.0.0.1:8000"))
}

/// The next event, or the test fails naming what it waited for.
async fn next(watch: &mut Watch, waiting_for: &str) -> WatchEvent {
    timeout(ARRIVES_WITHIN, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {ARRIVES_WITHIN:?}: {waiting_for}"))
        .unwrap_or_else(|| panic!("the watch ended: {waiting_for}"))
}

/// The next event, which must be a batch.
async fn batch(watch: &mut Watch, waiting_for: &str) -> WatchBatch {
    match next(watch, waiting_for).await {
        WatchEvent::Batch(batch) => batch,
        other => panic!("{waiting_for}: got {other:?}"),
    }
}

fn puts(revision: Revision, records: &[Record]) -> WatchBatch {
    WatchBatch {
        revision,
        changes: records
            .iter()
            .map(|record| {
                WatchChange::Put(Versioned {
                    revision,
                    record: record.clone(),
                })
            })
            .collect(),
    }
}

fn record(change: &Change) -> Record {
    match change {
        Change::Put(record) => record.clone(),
        Change::Delete(_) => unreachable!("a put"),
    }
}

#[tokio::test]
async fn the_etcd_store_keeps_the_contract_and_the_guards_under_its_prefix_only() {
    let etcd = Etcd::start();
    contract(&store(&etcd, "/elbe").await).await;
    let other = store(&etcd, "/elbe-2/").await;
    guards(&other).await;
    let first = store(&etcd, "/elbe").await.load().await.unwrap();
    assert_eq!(first.records.len(), 1, "/elbe-2's records are not /elbe's");

    // Keys beside the records (cluster membership) are not records, and a damaged record is named.
    let mut client = other.client.clone();
    client.put("/elbe/members/lb-1a", "{}", None).await.unwrap();
    assert_eq!(
        store(&etcd, "/elbe")
            .await
            .load()
            .await
            .unwrap()
            .records
            .len(),
        1
    );
    client
        .put("/elbe/registrations/web/i-x", "{not json", None)
        .await
        .unwrap();
    let error = store(&etcd, "/elbe").await.load().await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("/elbe/registrations/web/i-x does not read"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_the_same_guard_one_wins_and_the_other_gets_conflict() {
    let etcd = Etcd::start();
    let (one, two) = (store(&etcd, "/elbe").await, store(&etcd, "/elbe").await);
    let key = registered("web", "i-a", "127.0.0.1:1").key();
    for round in 0..10 {
        // Both read the key as it is now, plan from it, and write at once.
        let held = one.load().await.unwrap();
        let held = held.records.iter().find(|v| v.record.key() == key);
        let guard = Guard::unchanged(key.clone(), held);
        let write = |store: EtcdStore, port: u16| {
            let guard = guard.clone();
            tokio::spawn(async move {
                let change = Change::Put(registered("web", "i-a", &format!("127.0.0.1:{port}")));
                store.apply_guarded(vec![guard], vec![change]).await
            })
        };
        let (a, b) = (write(one.clone(), 1), write(two.clone(), 2));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let (won, lost) = match (a, b) {
            (Ok(revision), Err(error)) | (Err(error), Ok(revision)) => (revision, error),
            other => panic!("round {round}: exactly one must win: {other:?}"),
        };
        assert!(
            matches!(&lost, StoreError::Conflict { key } if key == "registrations/web/i-a"),
            "round {round}: {lost:?}"
        );
        let after = two.load().await.unwrap();
        assert_eq!(after.records.len(), 1);
        assert_eq!(
            after.records[0].revision, won,
            "round {round}: the winner's write is kept"
        );
    }
}

#[tokio::test]
async fn another_clients_changes_arrive_in_order_with_their_revisions() {
    let etcd = Etcd::start();
    let (watcher, writer) = (store(&etcd, "/elbe").await, store(&etcd, "/elbe").await);
    let start = watcher.load().await.unwrap().revision;
    let mut watch = watcher.watch(start);
    let (a, b) = (put("web", "i-a"), put("web", "i-b"));
    let first = writer.apply(vec![a.clone(), b.clone()]).await.unwrap();
    // A member's key beside the records is not a record: the watch passes over it.
    let mut client = writer.client.clone();
    client.put("/elbe/members/lb-1a", "{}", None).await.unwrap();
    let gone = deregistered("web", "i-a");
    let second = writer
        .apply(vec![
            Change::Put(gone.clone()),
            Change::Delete(record(&b).key()),
        ])
        .await
        .unwrap();
    let third = writer.apply(vec![put("web", "i-c")]).await.unwrap();
    assert_eq!(
        batch(&mut watch, "the first batch").await,
        puts(first, &[record(&a), record(&b)])
    );
    assert_eq!(
        batch(&mut watch, "the second batch").await,
        WatchBatch {
            revision: second,
            changes: vec![
                WatchChange::Put(Versioned {
                    revision: second,
                    record: gone
                }),
                WatchChange::Delete(record(&b).key()),
            ],
        }
    );
    assert_eq!(
        batch(&mut watch, "the third batch").await,
        puts(third, &[record(&put("web", "i-c"))])
    );
}

#[tokio::test]
async fn the_watch_resumes_after_kill_9_and_restart_with_nothing_missed() {
    let mut etcd = Etcd::start();
    let (watcher, writer) = (store(&etcd, "/elbe").await, store(&etcd, "/elbe").await);
    let mut watch = watcher.watch(watcher.load().await.unwrap().revision);
    let before = writer.apply(vec![put("web", "i-0")]).await.unwrap();
    assert_eq!(
        batch(&mut watch, "the write before the kill")
            .await
            .revision,
        before
    );

    etcd.kill();
    let refused = writer.apply(vec![put("web", "i-lost")]).await;
    assert!(
        matches!(refused, Err(StoreError::Etcd { .. })),
        "{refused:?}"
    );
    etcd.restart();

    // Written at once after the restart (likely before the watch has reconnected), then more.
    let mut written = Vec::new();
    for n in 1..=5 {
        let change = put("web", &format!("i-{n}"));
        let revision = writer.apply(vec![change.clone()]).await.unwrap();
        written.push(puts(revision, &[record(&change)]));
    }
    for (n, expected) in written.into_iter().enumerate() {
        let got = batch(&mut watch, &format!("write {} after the restart", n + 1)).await;
        assert_eq!(got, expected, "in order, none twice, none missed");
    }
    let last = writer.apply(vec![put("web", "i-6")]).await.unwrap();
    assert_eq!(
        batch(&mut watch, "a write once resumed").await.revision,
        last
    );
}

#[tokio::test]
async fn compaction_past_the_watched_revision_or_an_etcd_that_went_back_is_a_reset() {
    let mut etcd = Etcd::start();
    let store = store(&etcd, "/elbe").await;
    let from = store.apply(vec![put("web", "i-0")]).await.unwrap();
    let mut latest = from;
    for n in 1..=4 {
        latest = store
            .apply(vec![put("web", &format!("i-{n}"))])
            .await
            .unwrap();
    }
    let mut client = store.client.clone();
    client
        .compact(i64::try_from(latest.0).unwrap(), None)
        .await
        .unwrap();
    let mut watch = store.watch(from);
    match next(&mut watch, "the reset after compaction").await {
        WatchEvent::Reset(reason) => {
            println!("after compaction: {reason}");
            assert!(reason.contains("compacted"), "{reason}");
        }
        other => panic!("a reset, not {other:?}"),
    }
    assert!(watch.next().await.is_none(), "a reset ends the watch");

    // A watch that delivered up to `latest`, then etcd replaced by an empty one (its revision back to 1).
    let mut watch = store.watch(latest);
    etcd.replace();
    match next(&mut watch, "the reset after etcd went back").await {
        WatchEvent::Reset(reason) => {
            println!("after etcd was replaced: {reason}");
            assert!(reason.contains("went back"), "{reason}");
        }
        other => panic!("a reset, not {other:?}"),
    }
}

#[tokio::test]
async fn a_write_while_etcd_is_stopped_fails_within_the_request_timeout() {
    let mut etcd = Etcd::start();
    let store = store(&etcd, "/elbe").await;
    store.apply(vec![put("web", "i-a")]).await.unwrap();
    etcd.kill();
    let started = Instant::now();
    let error = store.apply(vec![put("web", "i-b")]).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took <= REQUEST_TIMEOUT + Duration::from_millis(500),
        "took {took:?}"
    );
    assert!(
        matches!(
            error,
            StoreError::Etcd {
                operation: "write",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(&etcd.endpoint()), "{error}");
    let started = Instant::now();
    assert!(store.load().await.is_err());
    assert!(started.elapsed() <= REQUEST_TIMEOUT + Duration::from_millis(500));
    println!("a write with etcd down failed in {took:?}: {error}");

    // A hung etcd (SIGSTOP: the connection stays open, nothing answers) fails by the timeout.
    etcd.restart();
    let deadline = Instant::now() + ARRIVES_WITHIN;
    while store.load().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd.pause();
    let started = Instant::now();
    let error = store.apply(vec![put("web", "i-c")]).await.unwrap_err();
    let took = started.elapsed();
    etcd.resume();
    assert!(
        took >= REQUEST_TIMEOUT && took <= REQUEST_TIMEOUT + Duration::from_millis(500),
        "took {took:?}: {error}"
    );
    assert!(error.to_string().contains("no answer within 2s"), "{error}");
    println!("a write with etcd paused failed in {took:?}: {error}");

    // A store made while etcd is down connects once it is back.
    etcd.kill();
    let later = EtcdStore::connect(&[etcd.endpoint()], "/elbe")
        .await
        .unwrap();
    etcd.restart();
    let deadline = Instant::now() + ARRIVES_WITHIN;
    while later.load().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = later.load().await.unwrap().records;
    let ids: Vec<String> = records.iter().map(|v| v.record.key().to_string()).collect();
    assert!(ids.contains(&"registrations/web/i-a".to_owned()), "{ids:?}");
    assert!(
        !ids.contains(&"registrations/web/i-b".to_owned()),
        "refused at once, never sent: {ids:?}"
    );
    // The write that timed out against the paused etcd was sent: etcd may apply it once resumed (a timeout's
    // outcome is unknown; the watch delivers it if it was).
    println!("after the pause: {ids:?}");
}

#[tokio::test]
async fn the_first_secret_offered_is_the_one_every_process_gets_and_records_skip_it() {
    let etcd = Etcd::start();
    let (one, two) = (store(&etcd, "/elbe").await, store(&etcd, "/elbe").await);
    let first = one.shared_secret("stickiness", b"first").await.unwrap();
    let second = two.shared_secret("stickiness", b"second").await.unwrap();
    assert_eq!(first, b"first");
    assert_eq!(second, b"first", "the second process takes the first one's");
    let elsewhere = store(&etcd, "/other").await;
    assert_eq!(
        elsewhere.shared_secret("stickiness", b"own").await.unwrap(),
        b"own",
        "another prefix is another cluster"
    );
    let contents = one.load().await.unwrap();
    assert!(contents.records.is_empty(), "a secret is not a record");
}
