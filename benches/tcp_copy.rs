//! The TCP listener's copy loop, measured three ways (issue 14: "measure `tokio::io::copy_bidirectional` against
//! a splice(2)-based path on Linux and keep the faster"):
//!
//! - `tunnel`: elbe's own tunnel (`data_plane::tunnel`, 16 KiB user-space buffer each way, half-close, idle timer);
//! - `copy_bidirectional`: tokio's (8 KiB buffers each way);
//! - `splice`: the TCP listener's (`data_plane::tcp::splice`), splice(2) through a pipe per direction, bytes never
//!   leave the kernel.
//!
//! Each run pushes `MIB` MiB from a blocking writer thread through the relay to a blocking sink thread over
//! loopback; the relay runs alone on a current-thread tokio runtime, and its thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) is what each method costs. Rounds interleave the methods so machine noise hits
//! them alike. `cargo bench --bench tcp_copy` (MIB=2048 ROUNDS=3 by default).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::time::Duration;
use tokio::time::Instant;

use nix::time::{clock_gettime, ClockId};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn thread_cpu() -> Duration {
    let now = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}

/// A sink that reads to the end and closes; returns the address it listens on.
fn sink() -> (SocketAddr, std::thread::JoinHandle<u64>) {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind sink");
    let addr = listener.local_addr().expect("sink address");
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("sink accept");
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        total
    });
    (addr, handle)
}

/// A writer that sends `bytes` to `addr`, half-closes, and reads until the relay closes.
fn writer(addr: SocketAddr, bytes: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stream = StdStream::connect(addr).expect("writer connect");
        let buf = vec![0x5au8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            stream.write_all(&buf[..n]).expect("writer write");
            left -= n as u64;
        }
        stream.shutdown(Shutdown::Write).expect("writer shutdown");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    })
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Tunnel,
    CopyBidirectional,
    Splice,
}

/// One run: `bytes` through the relay; returns (wall time, relay thread CPU).
fn run(method: Method, bytes: u64) -> (Duration, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (sink_addr, sink) = sink();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let writer = writer(listener.local_addr().expect("relay address"), bytes);
        let (client, _) = listener.accept().await.expect("relay accept");
        let instance = TcpStream::connect(sink_addr).await.expect("relay connect");
        let (start, cpu) = (Instant::now(), thread_cpu());
        let (up, _) = match method {
            Method::Tunnel => elbe::bench_support::tunnel_relay(client, instance).await,
            Method::CopyBidirectional => {
                let (mut client, mut instance) = (client, instance);
                tokio::io::copy_bidirectional(&mut client, &mut instance).await
            }
            Method::Splice => elbe::bench_support::splice_relay(client, instance).await,
        }
        .expect("relay");
        let elapsed = (start.elapsed(), thread_cpu() - cpu);
        writer.join().expect("writer");
        assert_eq!(sink.join().expect("sink"), bytes, "{method:?} lost bytes");
        assert_eq!(up, bytes);
        elapsed
    })
}

fn main() {
    let mib = env_number("MIB", 2048);
    let rounds = env_number("ROUNDS", 3);
    let bytes = mib * 1024 * 1024;
    let methods = [Method::Tunnel, Method::CopyBidirectional, Method::Splice];
    let mut totals = [(Duration::ZERO, Duration::ZERO); 3];
    for round in 0..rounds {
        for (i, method) in methods.iter().enumerate() {
            let (wall, cpu) = run(*method, bytes);
            println!(
                "round {round} {method:?}: {:.0} MiB/s, relay CPU {:.3} s/GiB",
                mib as f64 / wall.as_secs_f64(),
                cpu.as_secs_f64() / (mib as f64 / 1024.0)
            );
            totals[i].0 += wall;
            totals[i].1 += cpu;
        }
    }
    println!("{:<20} {:>10} {:>16}", "method", "MiB/s", "relay CPU s/GiB");
    for (method, (wall, cpu)) in methods.iter().zip(totals) {
        let moved = (mib * rounds) as f64;
        println!(
            "{:<20} {:>10.0} {:>16.3}",
            format!("{method:?}"),
            moved / wall.as_secs_f64(),
            cpu.as_secs_f64() / (moved / 1024.0)
        );
    }
}
