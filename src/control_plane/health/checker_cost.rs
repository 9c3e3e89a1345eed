//! What the checker costs, measured: 2,000 HTTP-checked instances on real sockets and the real clock, the CPU time
//! per 1,000 checks of the checker's threads and of the process, and the memory the instances' tasks take.
//!
//! An ignored test, run by hand (`cargo test --release -- --ignored --nocapture checker_cost`), because it takes real
//! seconds and its numbers mean something only in a release build. Trade-off: it reads /proc, so it runs on Linux only;
//! the threads of the two runtimes are named so the checker's share of the CPU can be told apart from the servers'.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::time;

use super::checker::Checker;
use super::fake_instance::http_server;
use crate::config::{HealthCheck, HealthTarget};

/// CPU time in clock ticks, `[user, system]`, of the whole process and of its threads whose name starts with
/// `prefix`.
fn cpu_ticks(prefix: &str) -> ([u64; 2], [u64; 2]) {
    fn ticks(stat: &str) -> (String, [u64; 2]) {
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let field = |i: usize| fields[i].parse::<u64>().unwrap();
        (stat[open + 1..close].to_string(), [field(11), field(12)])
    }
    let process = ticks(&std::fs::read_to_string("/proc/self/stat").unwrap()).1;
    let mut threads = [0, 0];
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        if let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) {
            let (name, [user, system]) = ticks(&stat);
            if name.starts_with(prefix) {
                threads[0] += user;
                threads[1] += system;
            }
        }
    }
    (process, threads)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 2,000 HTTP-checked instances at a 1 s interval for 5 s. The servers run on their own runtime thread so the
/// checker's share of the CPU can be told apart (threads are named; /proc/self/task/*/stat). Run with
/// `cargo test --release -- --ignored --nocapture checker_cost`.
#[test]
#[ignore]
fn checker_cost() {
    const INSTANCES: usize = 2000;
    const SECONDS: u64 = 5;
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hc-server")
        .enable_all()
        .build()
        .unwrap();
    let checkers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hc-checker")
        .enable_all()
        .build()
        .unwrap();
    let status = Arc::new(AtomicU16::new(200));
    let listeners: Vec<(SocketAddr, Arc<AtomicUsize>)> = servers.block_on(async {
        let mut listeners = Vec::new();
        for i in 1..=8 {
            listeners.push(http_server(&format!("127.0.0.{i}"), status.clone()).await);
        }
        listeners
    });
    let requests = || {
        listeners
            .iter()
            .map(|(_, r)| r.load(Ordering::Relaxed))
            .sum::<usize>()
    };
    let instances: Vec<(Arc<str>, SocketAddr)> = (0..INSTANCES)
        .map(|i| (format!("i-{i:08}").into(), listeners[i % listeners.len()].0))
        .collect();
    let check = HealthCheck {
        target: HealthTarget::Http {
            port: 0,
            path: "/health".into(),
        },
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let errors = IntCounter::new("errors", "test").unwrap();
    let rss_before = rss_kib();
    let checker = {
        let _guard = checkers.enter();
        Checker::start(check, instances, tx, errors.clone())
    };
    // Warm up: every instance in service.
    let in_service = checkers.block_on(async {
        let mut n = 0;
        while n < INSTANCES {
            match time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Some(e)) if e.health.in_service() => n += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        n
    });
    assert_eq!(in_service, INSTANCES);
    let rss_after = rss_kib();

    let (process0, checker0) = cpu_ticks("hc-checker");
    let (_, server0) = cpu_ticks("hc-server");
    let requests0 = requests();
    std::thread::sleep(Duration::from_secs(SECONDS));
    let (process1, checker1) = cpu_ticks("hc-checker");
    let (_, server1) = cpu_ticks("hc-server");
    let checks = requests() - requests0;
    drop(checker);

    // USER_HZ is 100 on Linux: one tick is 10 ms.
    let per_1000 = |t0: [u64; 2], t1: [u64; 2]| {
        let ms = |i: usize| (t1[i] - t0[i]) as f64 * 10.0 / (checks as f64 / 1000.0);
        format!(
            "{:.1} ms ({:.1} user + {:.1} system)",
            ms(0) + ms(1),
            ms(0),
            ms(1)
        )
    };
    println!(
        "{checks} checks in {SECONDS} s ({:.0}/s), connection errors {}. CPU per 1,000 checks: process {}; \
         checker threads {}; server threads {}. RSS +{} KiB for {INSTANCES} instances",
        checks as f64 / SECONDS as f64,
        errors.get(),
        per_1000(process0, process1),
        per_1000(checker0, checker1),
        per_1000(server0, server1),
        rss_after.saturating_sub(rss_before),
    );
    assert!(
        checks >= INSTANCES * (SECONDS as usize - 1),
        "only {checks} checks"
    );
}
