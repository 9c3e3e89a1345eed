//! Slow and numerous clients against the real `elbe` binary over real sockets (issue 12 §3): slowloris heads and
//! thousands of idle keep-alive connections while a normal client keeps a p99 under 10 ms (over the machine's own,
//! measured by a client straight to the instance); `max_connections` holding with the next connection waiting in
//! the kernel's backlog; a burst of 1,000 connects within the listen backlog, and a burst of 1,000 clients served
//! over a few instance connections; and accept failing with EMFILE, which must
//! back off, not spin, and recover.
//!
//! These tests hold up to 12,000 sockets: each raises its own RLIMIT_NOFILE (setrlimit, `raise_nofile`) and starts
//! elbe under `ulimit -n`; they fail, saying so, when the hard limit is too low.
mod common;
mod elbe_process;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, ConfigBuilder};
use elbe_process::{machine, raise_nofile, ElbeProcess, Instance, SideBySide};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";

/// Opens `n` connections, at most `at_once` connecting together, each sending one GET and reading its answer:
/// keep-alive connections left idle, held by the caller.
async fn idle_keep_alive(address: SocketAddr, n: usize, at_once: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    while open.len() < n {
        let batch = at_once.min(n - open.len());
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                tokio::spawn(async move {
                    let mut stream = TcpStream::connect(address).await.unwrap();
                    stream.write_all(GET).await.unwrap();
                    let response =
                        common::read_response(&mut stream, Duration::from_secs(10)).await;
                    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
                    stream
                })
            })
            .collect();
        for task in tasks {
            open.push(task.await.unwrap());
        }
    }
    open
}

/// `n` clients connecting at once (released by a barrier), each sending one GET and reading the first 12 bytes of
/// its answer, which must be `status`: their connections, still open, and how long each waited for its answer.
async fn burst(
    address: SocketAddr,
    n: usize,
    status: &'static [u8; 12],
) -> Vec<(TcpStream, Duration)> {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let began = Instant::now();
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream.write_all(GET).await.unwrap();
                let mut buf = [0u8; 12];
                stream.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, status);
                (stream, began.elapsed())
            })
        })
        .collect();
    let mut done = Vec::with_capacity(n);
    for task in tasks {
        done.push(task.await.unwrap());
    }
    done
}

/// Client connections elbe holds open now (`elbe_client_connections`, summed over its nodes).
async fn live_connections(elbe: &ElbeProcess) -> i64 {
    let metrics = common::get(elbe.admin, "/metrics").await;
    common::metric_sum(
        &String::from_utf8_lossy(&metrics.body),
        "elbe_client_connections",
    ) as i64
}

/// Polls until elbe holds `n` client connections (at most `limit`).
async fn wait_for_live(elbe: &ElbeProcess, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let live = live_connections(elbe).await;
        if live == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "elbe holds {live} connections, not {n}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A slowloris client: sends `GET` one byte a second (the first after `offset`) until elbe answers; the answer and
/// how long after connecting it came.
async fn slowloris(address: SocketAddr, offset: Duration) -> (String, Duration) {
    let (mut reader, mut writer) = TcpStream::connect(address).await.unwrap().into_split();
    let connected = Instant::now();
    let head = b"GET /slow HTTP/1.1\r\nHost: example.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    tokio::time::sleep(offset).await;
    let mut answer = Vec::new();
    for byte in head {
        let mut buf = [0u8; 512];
        tokio::select! {
            read = reader.read(&mut buf) => {
                if let Ok(n) = read {
                    answer.extend_from_slice(&buf[..n]);
                }
                break;
            }
            _ = async {
                let _ = writer.write_all(&[*byte]).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            } => {}
        }
    }
    let took = connected.elapsed();
    (String::from_utf8_lossy(&answer).to_string(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_ten_thousand_idle_connections_leave_a_normal_client_under_10ms() {
    let _machine = machine().await;
    bounded(Duration::from_secs(120), async {
        raise_nofile(16_384);
        let backend = Instance::start().await;
        let header_timeout = Duration::from_secs(6);
        let toml = ConfigBuilder::new()
            .lb("idle_timeout = \"60s\"")
            .limit("max_connections = 13000")
            .limit(&format!(
                "request_header_timeout = \"{}s\"",
                header_timeout.as_secs()
            ))
            .instance(backend.spec())
            .toml();
        let elbe = ElbeProcess::start(&toml, 16_384).await;
        let address = elbe.listener("HTTP");
        let before = elbe.rss_kib();

        let idle = idle_keep_alive(address, 10_000, 200).await;
        let with_idle = elbe.rss_kib();
        // 2,000 slowloris clients, their bytes spread evenly over each second.
        let slow: Vec<_> = (0..2000u32)
            .map(|i| tokio::spawn(slowloris(address, Duration::from_secs(1) * i / 2000)))
            .collect();
        wait_for_live(&elbe, 12_000, Duration::from_secs(10)).await;
        let sampler = elbe.sample_rss();

        let stop = Arc::new(AtomicBool::new(false));
        let normal = tokio::spawn(SideBySide::run(
            address,
            backend.address,
            Duration::from_millis(5),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::SeqCst);
        let normal = normal.await.unwrap();

        let mut late = Vec::new();
        for task in slow {
            let (answer, took) = task.await.unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 408 REQUEST_TIMEOUT"),
                "slowloris got {answer:?}"
            );
            if !(header_timeout - Duration::from_millis(50)..header_timeout + Duration::from_secs(2))
                .contains(&took)
            {
                late.push(took);
            }
        }
        let peak = sampler.peak_kib();
        println!(
            "RSS: {before} KiB at start, {with_idle} KiB with 10,000 idle keep-alive connections, peak {peak} KiB with \
             2,000 slowloris more ({:.1} KiB a connection); normal clients {}",
            (peak - before) as f64 / 12_000.0,
            normal.summary()
        );
        assert!(late.is_empty(), "408s not at the header timeout: {late:?}");
        normal.assert_elbe_adds_under(Duration::from_millis(10), 100, "slowloris");
        // Measured: about 20 KiB a connection (debug build); the ceiling leaves room for noise, not for a leak.
        let per_connection = (peak - before) as f64 / 12_000.0;
        assert!(
            per_connection < 28.0,
            "12,000 connections cost {per_connection:.1} KiB each"
        );
        // The idle keep-alive connections were left alone.
        assert!(live_connections(&elbe).await >= 10_000);
        drop(idle);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_and_the_next_connection_waits_in_the_backlog_until_one_closes() {
    let _machine = machine().await;
    bounded(Duration::from_secs(120), async {
        raise_nofile(16_384);
        let backend = Instance::start().await;
        let toml = ConfigBuilder::new()
            .lb("idle_timeout = \"60s\"")
            .limit("request_header_timeout = \"30s\"")
            .instance(backend.spec())
            .toml();
        let elbe = ElbeProcess::start(&toml, 16_384).await;
        let address = elbe.listener("HTTP");
        // max_connections is 10,000 by default.
        let mut held = idle_keep_alive(address, 10_000, 200).await;
        wait_for_live(&elbe, 10_000, Duration::from_secs(10)).await;

        let mut next = TcpStream::connect(address).await.unwrap();
        next.write_all(GET).await.unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_secs(1), next.read(&mut buf)).await;
        assert!(early.is_err(), "connection 10,001 was served: {early:?}");
        assert_eq!(live_connections(&elbe).await, 10_000);

        let closed = Instant::now();
        drop(held.pop());
        let response = common::read_response(&mut next, Duration::from_secs(5)).await;
        println!(
            "connection 10,001 served {:?} after one closed",
            closed.elapsed()
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        assert!(closed.elapsed() < Duration::from_secs(1));
    })
    .await;
}

/// The kernel's count of connections dropped because a listen queue was full (`ListenOverflows` in
/// /proc/net/netstat), for the report: it counts every listener of the network namespace, other tests' too.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if names.starts_with("TcpExt:") {
            let at = names
                .split_whitespace()
                .position(|n| n == "ListenOverflows");
            return at
                .and_then(|at| values.split_whitespace().nth(at)?.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_connects_fits_the_listen_backlog() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        raise_nofile(4096);
        // No instance: every request gets ELB's own 503, so the burst measures accepting, not an instance.
        let builder = ConfigBuilder::new();
        let elbe = ElbeProcess::start(&builder.toml(), 4096).await;
        let address = elbe.listener("HTTP");
        let overflows_before = listen_overflows();
        let slowest = burst(address, 1000, b"HTTP/1.1 503")
            .await
            .into_iter()
            .map(|(_, waited)| waited)
            .max()
            .unwrap_or_default();
        let overflows = listen_overflows() - overflows_before;
        println!(
            "1,000 concurrent connects: the slowest answered after {slowest:?}; {overflows} listen overflows"
        );
        // A connect the backlog dropped waits for its SYN's retransmission, after the initial RTO of 1 s (measured:
        // 1.2-1.9 s with a backlog of 128); every other one is answered in 0.1-0.2 s, 0.6 s on a loaded machine.
        assert!(
            slowest < Duration::from_millis(900),
            "a connect waited {slowest:?}"
        );
    })
    .await;
}

/// A burst of new clients is served over instance connections that its first answers free again, not one per
/// client. Measured in release with one worker: when one poll of the accept loop took every client queued, 8,000
/// clients opened 3,000-4,000 (17 KiB of buffers each at the peak, which the allocator kept afterwards), 200-240
/// since the loop takes 8-client batches (`node::tests::a_backlog_of_clients_is_accepted_a_batch_at_a_time`
/// checks the batches themselves). In this debug build, with the suite running beside it, 1,000 clients opened
/// 54-485 with the batches and 519-580 without: the bound here is the reuse, which a pool handing out nothing
/// (one connection per client) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_clients_is_served_over_a_few_instance_connections() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        raise_nofile(4096);
        // One worker, as the benchmarks run it: the batches are the accept loop's and one worker's polls.
        std::env::set_var("TOKIO_WORKER_THREADS", "1");
        let instance = Instance::start().await;
        let toml = ConfigBuilder::new()
            .instance(instance.spec())
            .lb(r#"idle_timeout = "300s""#)
            .toml();
        let elbe = ElbeProcess::start(&toml, 4096).await;
        let address = elbe.listener("HTTP");
        let before = instance.connections();
        let _open = burst(address, 1000, b"HTTP/1.1 200").await;
        let opened = instance.connections() - before;
        println!("1,000 clients at once: elbe opened {opened} connections to the instance");
        assert!(
            opened <= 700,
            "{opened} instance connections for 1,000 clients"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failing_with_emfile_backs_off_and_recovers() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let backend = Instance::start().await;
        let toml = ConfigBuilder::new()
            .lb("idle_timeout = \"60s\"")
            .limit("request_header_timeout = \"30s\"")
            .instance(backend.spec())
            .toml();
        // 64 files: elbe's own (runtime, listeners, log) and a few dozen connections.
        let elbe = ElbeProcess::start(&toml, 64).await;
        let address = elbe.listener("HTTP");
        assert_eq!(common::get(address, "/").await.status, 200);
        // Silent connections until elbe's table is full; the last ones wait in the backlog.
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(TcpStream::connect(address).await.unwrap());
        }
        let full = Instant::now() + Duration::from_secs(10);
        while !elbe.log().contains("accept failed") {
            assert!(Instant::now() < full, "accept never failed: {}", elbe.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let files = elbe.open_files();
        let ticks = elbe.cpu_ticks();
        let measured = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = elbe.cpu_ticks() - ticks;
        let share = used as f64 / (measured.elapsed().as_secs_f64() * 100.0);
        let failures = elbe.log().matches("accept failed").count();
        println!(
            "EMFILE with {files} files open: elbe used {:.1} % of a core over 2 s; {failures} accept failures logged",
            share * 100.0
        );
        assert!(
            share < 0.10,
            "elbe spun at {:.0} % of a core while accept failed",
            share * 100.0
        );

        drop(held);
        let recovered = Instant::now() + Duration::from_secs(10);
        loop {
            let stream = TcpStream::connect(address).await;
            if let Ok(mut stream) = stream {
                stream.write_all(GET).await.unwrap();
                let response = common::read_response(&mut stream, Duration::from_secs(2)).await;
                if response.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            assert!(Instant::now() < recovered, "elbe did not recover from EMFILE");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
