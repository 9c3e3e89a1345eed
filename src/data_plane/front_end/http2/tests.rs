//! The HTTP/2 connection's timers over an in-memory socket on tokio's paused clock: each rule of the module closes
//! at exactly its deadline, and nothing closes a connection that is making progress or waiting for its instance.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::{ClientIo, Underway};
use crate::data_plane::body::ConnectionState;

const IDLE: Duration = Duration::from_secs(10);

struct Rig {
    io: ClientIo<DuplexStream>,
    /// The client's end of the socket.
    client: DuplexStream,
    state: Arc<ConnectionState>,
    underway: Arc<Underway>,
}

/// A connection whose socket buffers 64 bytes each way, opened now.
fn rig() -> Rig {
    let (server, client) = tokio::io::duplex(64);
    let state = Arc::new(ConnectionState::default());
    let underway = Arc::new(Underway::default());
    Rig {
        io: ClientIo::new(server, state.clone(), underway.clone(), IDLE),
        client,
        state,
        underway,
    }
}

/// Writes until the socket's buffer is full, then waits on one more write: how it fails (within ten idle timeouts).
async fn write_until_blocked(io: &mut ClientIo<DuplexStream>) -> std::io::Error {
    let writes = async {
        loop {
            if let Err(error) = io.write_all(&[0u8; 16]).await {
                return error;
            }
        }
    };
    tokio::time::timeout(IDLE * 10, writes)
        .await
        .expect("the blocked write failed within ten idle timeouts")
}

/// Waits on a read (the client sends nothing): how it fails (within ten idle timeouts).
async fn read_error(io: &mut ClientIo<DuplexStream>) -> std::io::Error {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(IDLE * 10, io.read(&mut buf)).await {
        Ok(Ok(n)) => panic!("the client sent nothing, yet {n} bytes were read"),
        Ok(Err(error)) => error,
        Err(_) => panic!("the read did not fail within ten idle timeouts"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let mut rig = rig();
    let opened = Instant::now();
    let error = read_error(&mut rig.io).await;
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(opened.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_whose_client_reads_nothing_is_closed_at_the_idle_timeout_while_elbe_writes(
) {
    // A PING or SETTINGS flood: elbe owes answers, the client reads none, h2 stops reading. The write must fail.
    let mut rig = rig();
    let opened = Instant::now();
    let error = write_until_blocked(&mut rig.io).await;
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(opened.elapsed(), IDLE);
    drop(rig.client);
}

#[tokio::test(start_paused = true)]
async fn a_write_the_client_never_reads_fails_one_idle_timeout_after_it_blocked_even_with_a_request_in_flight(
) {
    let mut rig = rig();
    rig.state.begin_request();
    tokio::time::sleep(IDLE * 3).await;
    let blocked = Instant::now();
    let error = write_until_blocked(&mut rig.io).await;
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(blocked.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_keeps_reading_is_never_cut_while_a_request_is_in_flight() {
    let mut rig = rig();
    rig.state.begin_request();
    let mut client = rig.client;
    let reader = tokio::spawn(async move {
        // A slow reader: 16 bytes every half idle timeout, for three idle timeouts.
        let mut buf = [0u8; 16];
        for _ in 0..6 {
            tokio::time::sleep(IDLE / 2).await;
            client.read_exact(&mut buf).await.unwrap();
        }
        client
    });
    let started = Instant::now();
    while started.elapsed() < IDLE * 3 {
        rig.io.write_all(&[0u8; 16]).await.unwrap();
    }
    drop(reader.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_its_instance_is_not_timed_by_the_connection() {
    let mut rig = rig();
    rig.state.begin_request();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(IDLE * 5, rig.io.read(&mut buf)).await;
    assert!(read.is_err(), "the read ended: {read:?}");
    drop(rig.client);
}

#[tokio::test(start_paused = true)]
async fn a_response_under_way_with_no_byte_moving_is_cut_one_idle_timeout_after_it_started() {
    // A client that opens no flow-control window: the head went out, the body cannot, nothing moves.
    let mut rig = rig();
    rig.state.begin_request();
    tokio::time::sleep(IDLE * 2).await;
    let body = rig.underway.track(Full::new(Bytes::from_static(b"body")));
    let started = Instant::now();
    let error = read_error(&mut rig.io).await;
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), IDLE);
    drop(body);
}

#[tokio::test(start_paused = true)]
async fn bytes_from_the_client_keep_a_response_under_way_alive() {
    let mut rig = rig();
    rig.state.begin_request();
    let _body = rig.underway.track(Full::new(Bytes::from_static(b"body")));
    let mut client = rig.client;
    let sender = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(IDLE / 2).await;
            client.write_all(b"x").await.unwrap();
        }
        client
    });
    let started = Instant::now();
    let mut buf = [0u8; 16];
    for _ in 0..4 {
        assert_eq!(rig.io.read(&mut buf).await.unwrap(), 1);
    }
    let _client = sender.await.unwrap();
    let last_byte = Instant::now();
    assert_eq!(last_byte - started, IDLE * 2);
    let error = read_error(&mut rig.io).await;
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(last_byte.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_response_that_ended_is_no_longer_under_way() {
    let underway = Arc::new(Underway::default());
    let mut body = underway.track(Full::new(Bytes::from_static(b"body")));
    assert_eq!(underway.open(), 1);
    let collected = (&mut body).collect().await.unwrap().to_bytes();
    assert_eq!(collected, Bytes::from_static(b"body"));
    assert_eq!(underway.open(), 0, "the body ended");
    drop(body);
    assert_eq!(underway.open(), 0);

    let empty = underway.track(Empty::<Bytes>::new());
    assert_eq!(underway.open(), 0, "an empty body is never under way");
    drop(empty);
    let dropped = underway.track(Full::new(Bytes::from_static(b"body")));
    assert_eq!(underway.open(), 1);
    drop(dropped);
    assert_eq!(underway.open(), 0, "a body dropped unfinished is over");
    assert_eq!(underway.started(), 2);
}
