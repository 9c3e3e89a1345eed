//! TCP listeners (ELB-SPEC §1.3, §3, §5, §8, §10, §11; DESIGN.md "TCP and SSL listeners") over real sockets:
//! bytes pass untouched both ways, a client's half-close reaches the instance and the rest of the answer still
//! comes back, instances take connections round robin, a dead instance is skipped, a silent connection is closed
//! at the idle timeout, a full surge queue closes new connections, and each connection is counted and logged.
mod common;
mod tcp_support;

use std::time::Duration;

use common::*;
use tcp_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn tcp_builder() -> ConfigBuilder {
    let mut builder = ConfigBuilder::new();
    builder.listeners = vec![listener("TCP", "TCP", "")];
    builder
}

fn spec(id: &str, instance: &Instance) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        zone: "zone-a".into(),
        address: instance.address,
    }
}

#[tokio::test]
async fn arbitrary_bytes_pass_both_ways_untouched() {
    let echo = Instance::echo().await;
    let elbe = tcp_builder().instance(spec("i-echo", &echo)).start().await;
    let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    // Not HTTP: every byte value, NULs and CRLFs included, 64 KiB of it.
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let (mut read, mut write) = client.split();
    let (_, echoed) = tokio::join!(
        async { write.write_all(&payload).await.unwrap() },
        read_n(&mut read, payload.len())
    );
    assert_eq!(echoed, payload);
    drop(client);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_half_close_reaches_the_instance_and_the_answer_still_comes_back() {
    // The instance reads to the end of the client's stream, then answers with what it counted.
    let counter = Instance::start(|mut stream| async move {
        let mut all = Vec::new();
        if stream.read_to_end(&mut all).await.is_ok() && !all.is_empty() {
            let _ = stream
                .write_all(format!("got {} bytes", all.len()).as_bytes())
                .await;
        }
    })
    .await;
    let elbe = tcp_builder()
        .instance(spec("i-count", &counter))
        .start()
        .await;
    let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    client.write_all(&[b'x'; 1000]).await.unwrap();
    client.shutdown().await.unwrap();
    let answer = read_to_end(&mut client, Duration::from_secs(5)).await;
    assert_eq!(answer, b"got 1000 bytes");
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn instances_take_connections_round_robin() {
    let (a, b) = (Instance::named("a").await, Instance::named("b").await);
    let elbe = tcp_builder()
        .instance(spec("i-a", &a))
        .instance(spec("i-b", &b))
        .start()
        .await;
    let mut names = Vec::new();
    for _ in 0..6 {
        let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
        names.push(read_n(&mut client, 1).await[0]);
    }
    // Strict alternation, whichever comes first.
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "{:?}", String::from_utf8_lossy(&names));
    }
    assert_eq!(names.iter().filter(|&&n| n == b'a').count(), 3);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_dead_instance_is_skipped_for_the_next_one() {
    // Both pass their first check; then one dies. With checks 30 s apart (and passive checks off) it stays in
    // service, so every connection that picks it must move on to the other.
    let dead_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = Instance::serve(dead_listener, |_| async {});
    let alive = Instance::named("alive").await;
    let mut builder = tcp_builder()
        .lb("passive_health_checks = false")
        .instance(spec("i-dead", &dead))
        .instance(spec("i-alive", &alive));
    builder.health_check = "[load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"30s\"\ntimeout = \"1s\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n".into();
    let elbe = builder.start().await;
    wait_for_health(&elbe, "i-dead", "InService", "N/A").await;
    drop(dead); // closes the listening socket: connects are refused from now on
    for _ in 0..4 {
        let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
        assert_eq!(read_n(&mut client, 5).await, b"alive");
    }
    let metrics = elbe.server().metrics().encode();
    assert!(
        metric(&metrics, "elbe_backend_connection_errors_total") >= 2.0,
        "round robin sent half the connections to the dead instance first: {metrics}"
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_idle_timeout() {
    let echo = Instance::echo().await;
    let elbe = tcp_builder()
        .lb("idle_timeout = \"300ms\"")
        .instance(spec("i-echo", &echo))
        .start()
        .await;
    let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    // Bytes that move keep it open past the timeout (450 ms in all)...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.write_all(b"ping").await.unwrap();
        assert_eq!(read_n(&mut client, 4).await, b"ping");
    }
    // ...and then silence closes it, one idle timeout after the last byte (less the echo's own trip, at most).
    let last_byte = tokio::time::Instant::now();
    let rest = read_to_end(&mut client, Duration::from_secs(3)).await;
    assert!(rest.is_empty());
    let waited = last_byte.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_full_surge_queue_closes_new_connections() {
    let echo = Instance::echo().await;
    let elbe = tcp_builder()
        .limit("backend_max_requests = 1\nsurge_queue_size = 1")
        .instance(spec("i-echo", &echo))
        .start()
        .await;
    let node = elbe.node("zone-a");
    // The first connection holds the instance's one slot.
    let mut first = TcpStream::connect(node).await.unwrap();
    first.write_all(b"1").await.unwrap();
    assert_eq!(read_n(&mut first, 1).await, b"1");
    // The second waits in the queue; poll until it is counted there.
    let mut second = TcpStream::connect(node).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while metric(&elbe.server().metrics().encode(), "elbe_surge_queue_length") < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second connection never queued"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The third finds the queue full: closed without a byte.
    let mut third = TcpStream::connect(node).await.unwrap();
    assert!(read_to_end(&mut third, Duration::from_secs(3))
        .await
        .is_empty());
    let metrics = elbe.server().metrics().encode();
    assert_eq!(metric(&metrics, "elbe_spillover_total"), 1.0, "{metrics}");
    // The first one leaving lets the queued one through.
    drop(first);
    second.write_all(b"2").await.unwrap();
    assert_eq!(read_n(&mut second, 1).await, b"2");
    drop(second);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn an_instance_at_its_limit_is_passed_over_for_one_with_room() {
    // No surge queue at all: a connection that had to queue would be closed (spillover).
    let (a, b) = (Instance::named("a").await, Instance::named("b").await);
    let elbe = tcp_builder()
        .limit("backend_max_requests = 1\nsurge_queue_size = 0")
        .instance(spec("i-a", &a))
        .instance(spec("i-b", &b))
        .start()
        .await;
    let node = elbe.node("zone-a");
    // The first connection holds one instance; the second reaches the other and leaves.
    let mut held = TcpStream::connect(node).await.unwrap();
    let held_name = read_n(&mut held, 1).await[0];
    let mut passing = TcpStream::connect(node).await.unwrap();
    let free_name = read_n(&mut passing, 1).await[0];
    assert_ne!(held_name, free_name);
    drop(passing);
    // Round robin alternates, so of three connections in a row at least one finds the cursor on the held
    // instance: each must go to the free one instead. Each waits until elbe has closed the one before (only the
    // held connection open), so the free instance has room every time.
    for _ in 0..3 {
        wait_until_open_connections(&elbe, 1.0).await;
        let mut client = TcpStream::connect(node).await.unwrap();
        let mut got = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), client.read(&mut got)).await;
        assert!(
            matches!(read, Ok(Ok(1))) && got[0] == free_name,
            "a connection was not passed to the instance with room: {read:?} {got:?}"
        );
    }
    let metrics = elbe.server().metrics().encode();
    assert_eq!(metric(&metrics, "elbe_spillover_total"), 0.0, "{metrics}");
    drop(held);
    assert!(elbe.shutdown().await);
}

/// Waits until the node has `open` client connections, within 3 s.
async fn wait_until_open_connections(elbe: &Elbe, open: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let now = metric(&elbe.server().metrics().encode(), "elbe_client_connections");
        if now == open {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} connections open, not {open}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn each_connection_is_counted_and_logged_with_dashes_for_the_request() {
    let echo = Instance::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let elbe = tcp_builder()
        .lb(&format!(
            "access_log = {{ enabled = true, path = \"{}\" }}",
            path.display()
        ))
        .instance(spec("i-echo", &echo))
        .start()
        .await;
    let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    let local = client.local_addr().unwrap();
    client.write_all(b"hello, instance").await.unwrap();
    assert_eq!(read_n(&mut client, 15).await, b"hello, instance");
    client.shutdown().await.unwrap();
    assert!(read_to_end(&mut client, Duration::from_secs(5))
        .await
        .is_empty());
    drop(client);
    let metrics = elbe.server().metrics().encode();
    assert_eq!(
        metric(&metrics, "elbe_requests_total"),
        1.0,
        "RequestCount: {metrics}"
    );
    assert_eq!(
        metric(&metrics, "elbe_latency_seconds_count"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "elbe_received_bytes_total"),
        15.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "elbe_sent_bytes_total"), 15.0, "{metrics}");
    assert!(elbe.shutdown().await);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let fields: Vec<&str> = lines[0].splitn(12, ' ').collect();
    assert_eq!(fields[1], "web");
    assert_eq!(fields[2], local.to_string());
    assert_eq!(fields[3], echo.address.to_string());
    for time in &fields[4..7] {
        let seconds: f64 = time.parse().unwrap_or_else(|_| panic!("{time} in {text}"));
        assert!((0.0..1.0).contains(&seconds), "{text}");
    }
    assert_eq!(&fields[7..11], ["-", "-", "15", "15"], "{text}");
    assert_eq!(fields[11], "\"- - - \" \"-\" - -", "{text}");
}

#[tokio::test]
async fn without_an_instance_in_service_the_connection_is_closed_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let elbe = tcp_builder()
        .lb(&format!(
            "access_log = {{ enabled = true, path = \"{}\" }}",
            path.display()
        ))
        .start()
        .await;
    // Nothing written: a close with unread bytes would be a reset, and this test is about the close.
    let mut client = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    assert!(read_to_end(&mut client, Duration::from_secs(3))
        .await
        .is_empty());
    assert!(elbe.shutdown().await);
    let text = std::fs::read_to_string(&path).unwrap();
    let fields: Vec<&str> = text.trim_end().splitn(12, ' ').collect();
    assert_eq!(
        &fields[3..11],
        ["-", "-1", "-1", "-1", "-", "-", "0", "0"],
        "{text}"
    );
}
