//! HTTP/2 floods against the real `elbe` binary over real sockets (issue 12 §3): each misbehaving client gets a
//! GOAWAY or is closed, elbe's resident memory (VmRSS, sampled every 20 ms) stays under the ceiling each test
//! asserts, and a normal client on another connection keeps its latency. The frames are written raw (`h2_wire`),
//! so each test sends exactly the attack it names, on a prior-knowledge h2c connection (and one over TLS).
//!
//! | attack | what cuts it |
//! | --- | --- |
//! | rapid reset (CVE-2023-44487) | h2: GOAWAY `ENHANCE_YOUR_CALM` after 20 streams reset before elbe accepted them |
//! | CONTINUATION flood | h2: GOAWAY `ENHANCE_YOUR_CALM` (`too_many_continuations`) |
//! | HPACK bomb | h2: GOAWAY `ENHANCE_YOUR_CALM` once a header list decodes past 16 KiB |
//! | PING / SETTINGS flood, answers never read | elbe: the idle timeout fails the blocked write (ELB-SPEC §5) |
//! | zero window | elbe: a response with no byte moving for the idle timeout closes the connection |
//! | every window open, nothing read | elbe: h2's send buffer is 64 KiB a stream; the idle timeout closes it |
mod common;
mod elbe_process;
mod h2_wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, ConfigBuilder};
use elbe_process::{machine, ElbeProcess, Instance, SideBySide};
use h2_wire::*;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The load balancer's idle timeout in these tests: short, so a flood that is cut by it ends quickly.
const IDLE: Duration = Duration::from_secs(2);

/// How late after its deadline a close may come (a loaded machine; the timers themselves are exact, see the unit
/// tests of `front_end::http2`).
const SLACK: Duration = Duration::from_millis(1500);

/// What a flood may add to the normal client's p99 over the machine's own (a request through elbe takes about 1 ms
/// here).
const NORMAL_P99: Duration = Duration::from_millis(50);

/// The `elbe` binary (idle timeout [`IDLE`], an HTTP and an HTTPS listener) in front of an [`Instance`].
async fn start() -> (Instance, ElbeProcess) {
    let backend = Instance::start().await;
    let toml = ConfigBuilder::new()
        .lb(&format!("idle_timeout = \"{}ms\"", IDLE.as_millis()))
        .https(None)
        .instance(backend.spec())
        .toml();
    let elbe = ElbeProcess::start(&toml, 4096).await;
    // Warm up what every request allocates once, so the baseline is elbe serving, not elbe idle.
    for _ in 0..20 {
        assert_eq!(common::get(elbe.listener("HTTP"), "/").await.status, 200);
    }
    (backend, elbe)
}

/// What a flood cost: elbe's peak resident memory over its baseline, and a normal client's latencies meanwhile.
struct Cost {
    rss_growth_kib: u64,
    normal: SideBySide,
}

impl Cost {
    /// Asserts the ceiling on memory and the normal client's latency, and reports both.
    fn assert_within(&self, what: &str, rss_ceiling_mib: u64) {
        println!(
            "{what}: RSS grew {} KiB at its peak (ceiling {rss_ceiling_mib} MiB); normal clients {}",
            self.rss_growth_kib,
            self.normal.summary()
        );
        assert!(
            self.rss_growth_kib < rss_ceiling_mib * 1024,
            "{what}: elbe's RSS grew {} KiB, over the {rss_ceiling_mib} MiB ceiling",
            self.rss_growth_kib
        );
        self.normal.assert_elbe_adds_under(NORMAL_P99, 10, what);
    }
}

/// Runs `flood` while a normal client on its own connection sends a request every 5 ms, through elbe and straight
/// to `instance`.
async fn under_flood<T>(
    instance: &Instance,
    elbe: &ElbeProcess,
    flood: impl Future<Output = T>,
) -> (T, Cost) {
    let address = elbe.listener("HTTP");
    let baseline = elbe.rss_kib();
    let sampler = elbe.sample_rss();
    let stop = Arc::new(AtomicBool::new(false));
    let normal = tokio::spawn(SideBySide::run(
        address,
        instance.address,
        Duration::from_millis(5),
        stop.clone(),
    ));
    let output = flood.await;
    stop.store(true, Ordering::SeqCst);
    let normal = normal.await.unwrap();
    let peak = sampler.peak_kib();
    let cost = Cost {
        rss_growth_kib: peak.saturating_sub(baseline),
        normal,
    };
    (output, cost)
}

/// What one connection's exchange came to.
struct Exchange {
    frames: Vec<Frame>,
    /// Whether elbe read everything the client sent before closing.
    read_all: bool,
}

impl Exchange {
    fn goaway(&self) -> Option<&Frame> {
        self.frames.iter().find(|f| f.kind == GOAWAY)
    }

    fn count(&self, kind: u8) -> usize {
        self.frames.iter().filter(|f| f.kind == kind).count()
    }
}

/// Sends `bytes` on a new connection while reading every frame elbe sends, until elbe closes (at most 10 s).
async fn exchange(address: SocketAddr, bytes: Arc<Vec<u8>>) -> Exchange {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The write half stays open until reading ends: dropping it would send a FIN, which is not the attack.
    let write = tokio::spawn(async move { (writer.write_all(&bytes).await.is_ok(), writer) });
    let frames = read_until_closed(&mut reader).await;
    let (read_all, _writer) = write.await.unwrap();
    Exchange { frames, read_all }
}

/// Every frame until the connection closes; fails the test if it is still open after 10 s.
async fn read_until_closed<R: AsyncRead + Unpin>(reader: &mut R) -> Vec<Frame> {
    let mut frames = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = read_frame(reader).await {
            frames.push(frame);
        }
    })
    .await
    .expect("elbe closed the connection within 10 s");
    frames
}

/// Opens connections one after another for `period`, each sending `attack`; what each came to.
async fn for_a_while(address: SocketAddr, period: Duration, attack: Vec<u8>) -> Vec<Exchange> {
    let attack = Arc::new(attack);
    let until = Instant::now() + period;
    let mut exchanges = Vec::new();
    while Instant::now() < until {
        exchanges.push(exchange(address, attack.clone()).await);
    }
    exchanges
}

/// Asserts that every connection was sent a GOAWAY with `code` and then closed.
fn assert_every_connection_got_goaway(exchanges: &[Exchange], code: u32, what: &str) {
    for exchange in exchanges {
        let goaway = exchange
            .goaway()
            .unwrap_or_else(|| panic!("{what}: no GOAWAY in {:?}", exchange.frames));
        assert_eq!(goaway.error_code(), Some(code), "{what}: {goaway:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_and_hardly_reaches_the_instance() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        // CVE-2023-44487: open a stream and cancel it at once, a thousand times per connection.
        let mut attack = preface(&[]);
        let streams = 1000u32;
        for i in 0..streams {
            attack.extend(get(1 + 2 * i, "/"));
            attack.extend(rst_stream(1 + 2 * i, CANCEL));
        }
        let before = backend.requests();
        let (exchanges, cost) =
            under_flood(&backend, &elbe, for_a_while(address, Duration::from_secs(2), attack)).await;
        let dispatched = backend.requests() - before - cost.normal.requests();
        println!(
            "rapid reset: {} connections of {streams} streams each; {dispatched} requests reached the instance",
            exchanges.len()
        );
        assert_every_connection_got_goaway(&exchanges, ENHANCE_YOUR_CALM, "rapid reset");
        assert!(
            dispatched <= exchanges.len() * 25,
            "rapid reset: {dispatched} of {} cancelled streams reached the instance",
            exchanges.len() * streams as usize
        );
        cost.assert_within("rapid reset", 16);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_gets_goaway_before_elbe_reads_it_all() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        // A header block that never ends: HEADERS without END_HEADERS, then 32 MB of CONTINUATION frames.
        let mut attack = preface(&[]);
        attack.extend(frame(HEADERS, END_STREAM, 1, &get_block("/")));
        let mut fragment = Vec::new();
        while fragment.len() < 16_000 {
            fragment.extend(literal_indexed_name(32, &[b'c'; 100])); // cookie
        }
        for _ in 0..2000 {
            attack.extend(frame(CONTINUATION, 0, 1, &fragment));
        }
        let before = backend.requests();
        let (exchanges, cost) = under_flood(
            &backend,
            &elbe,
            for_a_while(address, Duration::from_secs(2), attack),
        )
        .await;
        println!("CONTINUATION flood: {} connections", exchanges.len());
        assert_every_connection_got_goaway(&exchanges, ENHANCE_YOUR_CALM, "CONTINUATION flood");
        assert!(
            exchanges.iter().all(|e| !e.read_all),
            "elbe read a whole 32 MB header block"
        );
        assert_eq!(backend.requests() - before, cost.normal.requests());
        cost.assert_within("CONTINUATION flood", 16);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_bomb_gets_goaway_and_costs_no_memory() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        // A 4,000-byte field in the dynamic table, then header blocks that name it 16,000 times each: 16 KB on
        // the wire decoding to 64 MB, two hundred times per connection.
        let mut attack = preface(&[]);
        let mut first = get_block("/");
        first.extend(literal_with_indexing(b"x-bomb", &[b'b'; 4000]));
        attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &first));
        for i in 1..200u32 {
            let mut block = get_block("/");
            while block.len() < 16_000 {
                block.extend(indexed(62));
            }
            attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, &block));
        }
        let before = backend.requests();
        let (exchanges, cost) = under_flood(
            &backend,
            &elbe,
            for_a_while(address, Duration::from_secs(2), attack),
        )
        .await;
        println!("HPACK bomb: {} connections", exchanges.len());
        assert_every_connection_got_goaway(&exchanges, ENHANCE_YOUR_CALM, "HPACK bomb");
        let bombs = backend.requests() - before - cost.normal.requests();
        assert!(
            bombs <= exchanges.len(),
            "{bombs} bombed requests reached the instance"
        );
        cost.assert_within("HPACK bomb", 16);
    })
    .await;
}

/// Writes the preface and then `unit` over and over without reading a byte, on a socket with a small receive
/// buffer so elbe's answers back up at once; how long until the write fails (elbe closed), and its error.
async fn flood_without_reading<S: AsyncWrite + Unpin>(
    mut stream: S,
    unit: &[u8],
) -> (Duration, std::io::Error) {
    let started = Instant::now();
    let mut chunk = preface(&[]);
    while chunk.len() < 64 * 1024 {
        chunk.extend_from_slice(unit);
    }
    let failed = tokio::time::timeout(IDLE * 5, async {
        loop {
            if let Err(error) = stream.write_all(&chunk).await {
                return error;
            }
            chunk.clear();
            while chunk.len() < 64 * 1024 {
                chunk.extend_from_slice(unit);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the unread flood was still open after {:?}", IDLE * 5));
    (started.elapsed(), failed)
}

/// A TCP connection whose receive buffer holds only a few KiB.
async fn connect_small_buffer(address: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(address).await.unwrap()
}

/// Asserts the flood was cut by elbe's idle timeout: a reset or broken pipe, at the timeout (not before).
fn assert_closed_by_idle_timeout(took: Duration, error: &std::io::Error, what: &str) {
    println!("{what}: cut after {took:?} ({error})");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{what}: {error}"
    );
    assert!(
        took >= IDLE - Duration::from_millis(50) && took < IDLE + SLACK,
        "{what}: cut after {took:?}, the idle timeout is {IDLE:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_whose_answers_are_never_read_is_closed_at_the_idle_timeout() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        let stream = connect_small_buffer(address).await;
        let ((took, error), cost) = under_flood(
            &backend,
            &elbe,
            flood_without_reading(stream, &ping(*b"floodPNG")),
        )
        .await;
        assert_closed_by_idle_timeout(took, &error, "PING flood");
        cost.assert_within("PING flood", 8);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_whose_acks_are_never_read_is_closed_at_the_idle_timeout() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        let stream = connect_small_buffer(address).await;
        let unit = settings(&[(SETTINGS_HEADER_TABLE_SIZE, 4096)]);
        let ((took, error), cost) =
            under_flood(&backend, &elbe, flood_without_reading(stream, &unit)).await;
        assert_closed_by_idle_timeout(took, &error, "SETTINGS flood");
        cost.assert_within("SETTINGS flood", 8);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_over_tls_whose_answers_are_never_read_is_closed_at_the_idle_timeout() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTPS");
        let tcp = connect_small_buffer(address).await;
        let stream = tls_h2(tcp).await;
        let ((took, error), cost) = under_flood(
            &backend,
            &elbe,
            flood_without_reading(stream, &ping(*b"floodPNG")),
        )
        .await;
        assert_closed_by_idle_timeout(took, &error, "PING flood over TLS");
        cost.assert_within("PING flood over TLS", 8);
    })
    .await;
}

/// A TLS client trusting the development CA, offering ALPN h2 only; fails unless elbe chose h2.
async fn tls_h2(tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_responses_are_closed_one_idle_timeout_after_they_stall() {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        let flood = async {
            // No stream may receive a byte of DATA, and no WINDOW_UPDATE ever comes: 128 responses of 1 MiB stall.
            let mut attack = preface(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
            for i in 0..128u32 {
                attack.extend(get(1 + 2 * i, "/download/1048576"));
            }
            let stream = TcpStream::connect(address).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            writer.write_all(&attack).await.unwrap();
            let mut frames = Vec::new();
            let mut last_headers = Instant::now();
            let closed = tokio::time::timeout(IDLE * 5, async {
                while let Some(frame) = read_frame(&mut reader).await {
                    if frame.kind == HEADERS {
                        last_headers = Instant::now();
                    }
                    frames.push(frame);
                }
            })
            .await;
            assert!(
                closed.is_ok(),
                "still open {:?} after the responses stalled",
                IDLE * 5
            );
            drop(writer);
            (
                Exchange {
                    frames,
                    read_all: true,
                },
                last_headers.elapsed(),
            )
        };
        let ((exchange, after_stall), cost) = under_flood(&backend, &elbe, flood).await;
        println!("zero window: closed {after_stall:?} after the last response head");
        assert_eq!(exchange.count(HEADERS), 128, "every response started");
        assert_eq!(exchange.count(DATA), 0, "no DATA without a window");
        assert!(
            after_stall >= IDLE - Duration::from_millis(50) && after_stall < IDLE + SLACK,
            "closed {after_stall:?} after the stall, the idle timeout is {IDLE:?}"
        );
        cost.assert_within("zero window", 16);
        // The instance's connections held by the stalled responses are free again.
        assert_eq!(common::get(address, "/").await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_with_every_window_open_and_nothing_read_are_bounded_and_closed_at_the_idle_timeout(
) {
    let _machine = machine().await;
    bounded(Duration::from_secs(60), async {
        let (backend, elbe) = start().await;
        let address = elbe.listener("HTTP");
        let flood = async {
            // Stream windows as large as HTTP/2 allows (the connection's 1.75 GiB), 128 downloads of 64 MiB, and not a
            // byte read.
            let mut stream = connect_small_buffer(address).await;
            let started = Instant::now();
            let mut attack = preface(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0x7fff_ffff)]);
            // Leave headroom below 2^31 - 1: the 1-byte updates below must never overflow the window (a
            // FLOW_CONTROL_ERROR would close the connection for a reason that is not this test's).
            attack.extend(window_update(0, 0x7000_0000));
            for i in 0..128u32 {
                attack.extend(get(1 + 2 * i, "/download/67108864"));
            }
            stream.write_all(&attack).await.unwrap();
            println!("SENT at {:?}", Instant::now());
            // A window update every 50 ms (never read by elbe, which is blocked writing) finds the close.
            let failed = tokio::time::timeout(IDLE * 5, async {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Err(error) = stream.write_all(&window_update(0, 1)).await {
                        return error;
                    }
                }
            })
            .await
            .expect("closed");
            (started.elapsed(), failed)
        };
        let ((took, error), cost) = under_flood(&backend, &elbe, flood).await;
        assert_closed_by_idle_timeout(took, &error, "open windows, nothing read");
        cost.assert_within("open windows, nothing read", 64);
    })
    .await;
}
