//! Health checks: probing instances on ELB's schedule and counting the results into DescribeInstanceHealth states.
//!
//! The rules are ELB-SPEC §2. A [`probe`] is one check of one instance: TCP connects, SSL completes a TLS handshake
//! without validating the certificate, HTTP/HTTPS sends `GET <path>` and passes only on status exactly `200` whose
//! body, if any, is framed by `Content-Length` or chunked encoding, all within the check's `Timeout`. [`Thresholds`]
//! turns consecutive results into the states and exact strings of §2.2: a new instance is InService after its first
//! pass (DESIGN.md "A new instance"), an InService instance goes OutOfService after `UnhealthyThreshold` consecutive
//! failures, and comes back after `HealthyThreshold` consecutive passes. The [`Checker`] runs one small tokio task
//! per instance, each on its own fixed-rate schedule, so a slow instance never delays another or its own next check.
//!
//! Trade-offs: a probe writes the request as raw bytes and reads only the response head (bounded to
//! [`MAX_RESPONSE_HEAD`]), because a full HTTP client costs more than the check is worth. One rustls `ClientConfig`
//! (with session resumption) serves every SSL/HTTPS probe in the process; rustls speaks TLS 1.2 and 1.3 only, so an
//! instance offering nothing newer than TLS 1.0/1.1 fails its SSL check here although ELB would pass it. The checker
//! reports only changes; whoever owns the instance list (the control plane) records REGISTRATION_IN_PROGRESS when it
//! adds an instance and ignores events for instances it no longer knows (a removal races with a check in flight).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::IntCounter;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{self, Instant, MissedTickBehavior};

use crate::config::{HealthCheck, HealthTarget};

/// The most of a response head a probe reads; a longer head fails the check as malformed.
pub const MAX_RESPONSE_HEAD: usize = 8192;

/// Instances given to [`Checker::start`] have their first checks spread evenly over this long (or the interval, if
/// shorter), so a start with thousands of instances does not probe them all in the same millisecond, yet every one
/// gets its first verdict within a second. Instances added later are checked right away.
const FIRST_CHECK_SPREAD: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------------------------
// DescribeInstanceHealth states (ELB-SPEC §2.2)
// ---------------------------------------------------------------------------------------------------------------

/// DescribeInstanceHealth's view of one instance (ELB-SPEC §2.2), with ELB's exact strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceHealth {
    pub state: &'static str,
    pub reason_code: &'static str,
    pub description: &'static str,
}

impl InstanceHealth {
    /// Passed its checks: gets traffic.
    pub const IN_SERVICE: InstanceHealth = InstanceHealth {
        state: "InService",
        reason_code: "N/A",
        description: "N/A",
    };
    /// Just registered, no verdict yet (DESIGN.md "A new instance").
    pub const REGISTRATION_IN_PROGRESS: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "ELB",
        description: "Instance registration is still in progress.",
    };
    /// Failed `UnhealthyThreshold` checks in a row and has passed none since.
    pub const FAILED_UNHEALTHY_THRESHOLD: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "Instance",
        description: "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.",
    };
    /// Out of service and passing again, but not yet `HealthyThreshold` times in a row.
    pub const NOT_YET_HEALTHY_THRESHOLD: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "Instance",
        description: "Instance has not passed the configured HealthyThreshold number of health checks consecutively.",
    };
    /// The instance's zone is not enabled on the load balancer; it gets no traffic (DESIGN.md).
    pub const ZONE_NOT_ENABLED: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "ELB",
        description: "Instance is in the EC2 Availability Zone for which LoadBalancer is not configured to route \
                      traffic to.",
    };
    /// Asked about by id but not registered.
    pub const NOT_REGISTERED: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "Instance",
        description: "Instance is not currently registered with the LoadBalancer.",
    };

    /// Whether the instance may get traffic.
    pub fn in_service(&self) -> bool {
        self.state == "InService"
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Threshold counting (ELB-SPEC §2.1 "Timing", DESIGN.md "A new instance")
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No check has passed and fewer than `unhealthy` have failed since registration.
    Registering,
    InService,
    OutOfService,
}

/// Threshold counting for one instance: consecutive results in, DescribeInstanceHealth state out. Pure, no I/O.
#[derive(Debug, Clone)]
pub struct Thresholds {
    healthy: u32,
    unhealthy: u32,
    phase: Phase,
    passes: u32,
    failures: u32,
}

impl Thresholds {
    /// A newly registered instance, REGISTRATION_IN_PROGRESS. A threshold of 0 counts as 1.
    pub fn new(healthy: u32, unhealthy: u32) -> Self {
        Thresholds {
            healthy: healthy.max(1),
            unhealthy: unhealthy.max(1),
            phase: Phase::Registering,
            passes: 0,
            failures: 0,
        }
    }

    /// Counts one check; returns the new state when the reported state changed.
    pub fn record(&mut self, passed: bool) -> Option<InstanceHealth> {
        let before = self.health();
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
        }
        self.phase = match self.phase {
            // ELB-SPEC §2.1 "New registration": the first pass puts a new instance in service.
            Phase::Registering if passed => Phase::InService,
            Phase::Registering | Phase::InService if self.failures >= self.unhealthy => {
                Phase::OutOfService
            }
            Phase::OutOfService if self.passes >= self.healthy => Phase::InService,
            unchanged => unchanged,
        };
        let after = self.health();
        (after != before).then_some(after)
    }

    /// The state DescribeInstanceHealth reports now.
    pub fn health(&self) -> InstanceHealth {
        match self.phase {
            Phase::Registering => InstanceHealth::REGISTRATION_IN_PROGRESS,
            Phase::InService => InstanceHealth::IN_SERVICE,
            Phase::OutOfService if self.passes > 0 => InstanceHealth::NOT_YET_HEALTHY_THRESHOLD,
            Phase::OutOfService => InstanceHealth::FAILED_UNHEALTHY_THRESHOLD,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// One probe (ELB-SPEC §2.1 "Target syntax")
// ---------------------------------------------------------------------------------------------------------------

/// Why one probe failed.
#[derive(Debug)]
pub enum ProbeFailure {
    /// The instance refused the connection.
    Refused,
    /// The connection was reset (or aborted) before a verdict.
    Reset,
    /// No TCP connection within the timeout.
    ConnectTimeout,
    /// Connected, but no verdict (handshake or response) within the timeout.
    Timeout,
    /// Connecting failed otherwise (unreachable network or host, no local address, ...).
    Connect(io::Error),
    /// The TLS handshake failed.
    Tls(String),
    /// The instance answered with a status other than 200.
    Status(u16),
    /// The response was not HTTP/1.x, or a 200 carried a body without `Content-Length` or chunked encoding.
    Malformed(String),
    /// Another I/O error after connecting.
    Io(io::Error),
}

impl ProbeFailure {
    /// Whether this failure counts as a backend connection error (CloudWatch `BackendConnectionErrors`).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ProbeFailure::Refused
                | ProbeFailure::Reset
                | ProbeFailure::ConnectTimeout
                | ProbeFailure::Connect(_)
        )
    }
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeFailure::Refused => f.write_str("connection refused"),
            ProbeFailure::Reset => f.write_str("connection reset"),
            ProbeFailure::ConnectTimeout => f.write_str("connect timed out"),
            ProbeFailure::Timeout => f.write_str("no answer within the timeout"),
            ProbeFailure::Connect(e) => write!(f, "connect failed: {e}"),
            ProbeFailure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ProbeFailure::Status(s) => write!(f, "status {s}, not 200"),
            ProbeFailure::Malformed(why) => write!(f, "malformed response: {why}"),
            ProbeFailure::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for ProbeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeFailure::Connect(e) | ProbeFailure::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Maps an I/O error after connecting.
fn io_failure(e: io::Error) -> ProbeFailure {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ProbeFailure::Reset,
        io::ErrorKind::UnexpectedEof => {
            ProbeFailure::Malformed("connection closed before a status line".into())
        }
        _ => ProbeFailure::Io(e),
    }
}

/// One check of one instance at `addr` (the caller picks the port: the target's, or the instance's own; DESIGN.md
/// "Health-check port"). The whole probe, connect included, takes at most `timeout`.
pub async fn probe(
    target: &HealthTarget,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let deadline = Instant::now() + timeout;
    let tcp = match time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProbeFailure::ConnectTimeout),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ProbeFailure::Refused)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(ProbeFailure::Reset)
        }
        Ok(Err(e)) => return Err(ProbeFailure::Connect(e)),
        Ok(Ok(tcp)) => tcp,
    };
    let verdict = async {
        match target {
            HealthTarget::Tcp { .. } => Ok(()),
            HealthTarget::Ssl { .. } => tls_handshake(tcp, addr).await.map(drop),
            HealthTarget::Http { path, .. } => http_get(tcp, addr, path).await,
            HealthTarget::Https { path, .. } => {
                http_get(tls_handshake(tcp, addr).await?, addr, path).await
            }
        }
    };
    time::timeout_at(deadline, verdict)
        .await
        .unwrap_or(Err(ProbeFailure::Timeout))
}

async fn tls_handshake(
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProbeFailure> {
    // An IP-address server name: rustls sends no SNI for it (ELB sends none either).
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(probe_tls_config())
        .connect(name, tcp)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ProbeFailure::Reset
            }
            _ => ProbeFailure::Tls(e.to_string()),
        })
}

/// Sends the health-check request and reads the verdict from the response head.
async fn http_get<S>(mut stream: S, addr: SocketAddr, path: &str) -> Result<(), ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // ELB-SPEC §2.1 "The request on the wire"; Host is the instance's address with its port.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ELB-HealthChecker/1.0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io_failure)?;
    stream.flush().await.map_err(io_failure)?;

    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let status_end = loop {
        if let Some(end) = find(&head, b"\r\n") {
            break end;
        }
        read_more(&mut stream, &mut head, &mut chunk).await?;
    };
    let status = parse_status_line(&head[..status_end]).ok_or_else(|| {
        ProbeFailure::Malformed(format!(
            "bad status line {:?}",
            String::from_utf8_lossy(&head[..status_end])
        ))
    })?;
    if status != 200 {
        return Err(ProbeFailure::Status(status));
    }

    // A 200 passes only if its body, if any, is framed (ELB-SPEC §2.1).
    let head_end = loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            break end + 4;
        }
        read_more(&mut stream, &mut head, &mut chunk).await?;
    };
    if is_framed(&head[status_end + 2..head_end]) {
        return Ok(());
    }
    if head.len() > head_end {
        return Err(ProbeFailure::Malformed(
            "a body without Content-Length or chunked encoding".into(),
        ));
    }
    // No framing headers and nothing after the head yet: it passes if the instance closes without a body.
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => Ok(()),
        Ok(_) => Err(ProbeFailure::Malformed(
            "a body without Content-Length or chunked encoding".into(),
        )),
    }
}

/// Appends one read to `head`, failing when the head outgrows [`MAX_RESPONSE_HEAD`] or the connection ends.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<(), ProbeFailure> {
    if head.len() >= MAX_RESPONSE_HEAD {
        return Err(ProbeFailure::Malformed(format!(
            "no complete response head in {MAX_RESPONSE_HEAD} bytes"
        )));
    }
    let room = chunk.len().min(MAX_RESPONSE_HEAD - head.len());
    match stream.read(&mut chunk[..room]).await.map_err(io_failure)? {
        0 if head.is_empty() => Err(ProbeFailure::Malformed(
            "connection closed without a response".into(),
        )),
        0 => Err(ProbeFailure::Malformed(
            "connection closed inside the response head".into(),
        )),
        n => {
            head.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.x SSS[ reason]` -> `SSS`.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    if !minor.is_ascii_digit() || rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.len() > 3 && rest[3] != b' ' {
        return None;
    }
    rest[..3]
        .iter()
        .try_fold(0u16, |n, d| Some(n * 10 + u16::from(d - b'0')))
}

/// Whether header lines (each ending in CRLF) carry `Content-Length` or `Transfer-Encoding: chunked`.
fn is_framed(headers: &[u8]) -> bool {
    headers.split(|&b| b == b'\n').any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            !value.is_empty() && value.iter().all(u8::is_ascii_digit)
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            value
                .to_ascii_lowercase()
                .windows(7)
                .any(|w| w == b"chunked")
        } else {
            false
        }
    })
}

/// The one TLS client configuration of every SSL/HTTPS probe in the process.
fn probe_tls_config() -> Arc<ClientConfig> {
    // A OnceLock, not a lock: built once, then only read.
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the aws-lc-rs provider supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UnverifiedCertificate(provider)))
                .with_no_client_auth();
            config.enable_sni = false;
            Arc::new(config)
        })
        .clone()
}

/// ELB does not validate instance certificates (ELB-SPEC §2.1): any chain is accepted. The handshake signature is
/// still checked against the presented key, which costs nothing and proves the instance holds that key.
#[derive(Debug)]
struct UnverifiedCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for UnverifiedCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The checker: one schedule per instance
// ---------------------------------------------------------------------------------------------------------------

/// A change in one instance's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub instance_id: Arc<str>,
    /// The address probed; lets the receiver drop a stale event for an instance re-added at another address.
    pub addr: SocketAddr,
    pub health: InstanceHealth,
}

/// What every check task of one checker shares.
struct Shared {
    check: HealthCheck,
    events: UnboundedSender<HealthEvent>,
    connection_errors: IntCounter,
}

enum Command {
    Add {
        instance_id: Arc<str>,
        addr: SocketAddr,
        first_check_after: Duration,
    },
    Remove {
        instance_id: Arc<str>,
    },
}

/// Checks a set of instances on ELB's schedule and sends every state change. Dropping it, or [`Checker::stop`],
/// stops every check.
///
/// One supervisor task owns the per-instance tasks (no lock: `add` and `remove` are messages to it); aborting the
/// supervisor drops its `JoinSet`, which aborts them all.
pub struct Checker {
    commands: UnboundedSender<Command>,
    supervisor: AbortHandle,
}

impl Checker {
    /// Starts checking each `(instance_id, addr)`; must be called inside a tokio runtime. Each instance starts
    /// REGISTRATION_IN_PROGRESS (not sent); every later change is sent on `events`. Every probe failure that is a
    /// connection error increments `connection_errors` (CloudWatch counts health-check connection failures in
    /// BackendConnectionErrors).
    pub fn start(
        check: HealthCheck,
        instances: Vec<(Arc<str>, SocketAddr)>,
        events: UnboundedSender<HealthEvent>,
        connection_errors: IntCounter,
    ) -> Checker {
        let (commands, receiver) = mpsc::unbounded_channel();
        let spread = check.interval.min(FIRST_CHECK_SPREAD);
        let count = instances.len().max(1) as u32;
        for (i, (instance_id, addr)) in instances.into_iter().enumerate() {
            let first_check_after = spread * i as u32 / count;
            // The receiver is alive: it is moved into the supervisor below.
            let _ = commands.send(Command::Add {
                instance_id,
                addr,
                first_check_after,
            });
        }
        let shared = Arc::new(Shared {
            check,
            events,
            connection_errors,
        });
        let supervisor = tokio::spawn(supervise(shared, receiver)).abort_handle();
        Checker {
            commands,
            supervisor,
        }
    }

    /// Starts checking an instance now (first check right away); an instance with the same id is replaced.
    pub fn add(&self, instance_id: Arc<str>, addr: SocketAddr) {
        // Fails only after stop, when there is nothing left to add to.
        let _ = self.commands.send(Command::Add {
            instance_id,
            addr,
            first_check_after: Duration::ZERO,
        });
    }

    /// Stops checking an instance; a check in flight is cancelled.
    pub fn remove(&self, instance_id: &str) {
        let _ = self.commands.send(Command::Remove {
            instance_id: instance_id.into(),
        });
    }

    /// Stops every check.
    pub fn stop(&self) {
        self.supervisor.abort();
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

async fn supervise(shared: Arc<Shared>, mut commands: UnboundedReceiver<Command>) {
    let mut tasks = JoinSet::new();
    let mut running: HashMap<Arc<str>, AbortHandle> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Add { instance_id, addr, first_check_after }) => {
                    let task = check_instance(shared.clone(), instance_id.clone(), addr, first_check_after);
                    if let Some(old) = running.insert(instance_id, tasks.spawn(task)) {
                        old.abort();
                    }
                }
                Some(Command::Remove { instance_id }) => {
                    if let Some(task) = running.remove(&instance_id) {
                        task.abort();
                    }
                }
            },
            // Reaps aborted tasks so the set does not grow with churn.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Checks one instance every `interval` until aborted (or until nobody listens for events).
async fn check_instance(
    shared: Arc<Shared>,
    instance_id: Arc<str>,
    addr: SocketAddr,
    first_check_after: Duration,
) {
    let check = &shared.check;
    let mut thresholds = Thresholds::new(check.healthy_threshold, check.unhealthy_threshold);
    // Fixed rate: a check starts every interval whatever the last one took (ELB-SPEC §2.1 "Timing"); a check
    // lasts at most `timeout` < `interval`, so ticks are only missed if the runtime itself stalls.
    let mut schedule = time::interval_at(Instant::now() + first_check_after, check.interval);
    schedule.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        schedule.tick().await;
        // Boxed: a TLS probe's state is large, and this task lives for the instance's whole registration.
        let outcome = Box::pin(probe(&check.target, addr, check.timeout)).await;
        if let Err(failure) = &outcome {
            if failure.is_connection_error() {
                shared.connection_errors.inc();
            }
            tracing::debug!(instance = %instance_id, %addr, target = %check.target, %failure, "health check failed");
        }
        if let Some(health) = thresholds.record(outcome.is_ok()) {
            tracing::info!(instance = %instance_id, %addr, state = health.state, reason = health.description, "instance health changed");
            let event = HealthEvent {
                instance_id: instance_id.clone(),
                addr,
                health,
            };
            if shared.events.send(event).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    const SHORT: Duration = Duration::from_millis(500);

    fn http(port: u16) -> HealthTarget {
        HealthTarget::Http {
            port,
            path: "/health".into(),
        }
    }

    /// Reads a request head (bounded), returning it; empty if the client sent nothing.
    async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while find(&head, b"\r\n\r\n").is_none() && head.len() < 16384 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        head
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: u16) -> Vec<u8> {
        let head = read_head(&mut stream).await;
        let response =
            format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        head
    }

    /// An HTTP server answering every request with the current `status`; counts the requests it answered.
    async fn http_server(ip: &str, status: Arc<AtomicU16>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (status, counter) = (status.clone(), counter.clone());
                tokio::spawn(async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    answer(stream, status.load(Ordering::Relaxed)).await;
                });
            }
        });
        (addr, requests)
    }

    /// Accepts one connection, reads once, writes `response` and closes; sends what it read.
    async fn raw_server(response: &'static [u8]) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let _ = stream.write_all(response).await;
            let _ = stream.shutdown().await;
            let _ = tx.send(buf[..n].to_vec());
        });
        (addr, rx)
    }

    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;
        let certs = CertificateDer::pem_file_iter("/work/main/certs/localhost.crt")
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file("/work/main/certs/localhost.key").unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// A TLS server answering HTTP with `status`.
    async fn https_server(status: u16) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls_acceptor();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tls, status).await;
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/2 200 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9.6"), None);
        assert!(is_framed(b"Server: x\r\ncontent-length: 12\r\n"));
        assert!(is_framed(b"Transfer-Encoding: gzip, Chunked\r\n"));
        assert!(!is_framed(b"Server: x\r\nContent-Length: abc\r\n"));
    }

    #[tokio::test]
    async fn http_passes_only_on_200() {
        for (code, passes) in [(200, true), (301, false), (204, false), (500, false)] {
            let (addr, _) = http_server("127.0.0.1", Arc::new(AtomicU16::new(code))).await;
            let result = probe(&http(addr.port()), addr, SHORT).await;
            match result {
                Ok(()) => assert!(passes, "{code} passed"),
                Err(ProbeFailure::Status(s)) => {
                    assert!(!passes && s == code, "{code} failed with {s}")
                }
                Err(other) => panic!("{code}: {other}"),
            }
        }
    }

    #[tokio::test]
    async fn http_request_on_the_wire() {
        let (addr, seen) = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        probe(&http(addr.port()), addr, SHORT).await.unwrap();
        let request = String::from_utf8(seen.await.unwrap()).unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains("\r\nUser-Agent: ELB-HealthChecker/1.0\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", addr.port())),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn http_failures() {
        // Accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let started = Instant::now();
        let result = probe(&http(addr.port()), addr, Duration::from_millis(200)).await;
        assert!(matches!(result, Err(ProbeFailure::Timeout)), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(400));
        holder.abort();

        let addr = closed_port().await;
        let result = probe(&http(addr.port()), addr, SHORT).await;
        assert!(matches!(result, Err(ProbeFailure::Refused)), "{result:?}");
        assert!(result.unwrap_err().is_connection_error());

        // Accepts and resets.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_zero_linger().unwrap();
            drop(stream);
        });
        let result = probe(&http(addr.port()), addr, SHORT).await;
        assert!(
            matches!(
                result,
                Err(ProbeFailure::Reset | ProbeFailure::Malformed(_))
            ),
            "{result:?}"
        );

        for garbage in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"HTTP/1.1 OK 200\r\n\r\n",
            b"\0\0\0\0",
            b"",
        ] {
            let (addr, _) = raw_server(garbage).await;
            let result = probe(&http(addr.port()), addr, SHORT).await;
            assert!(
                matches!(result, Err(ProbeFailure::Malformed(_))),
                "{garbage:?}: {result:?}"
            );
        }

        // A 200 with an unframed body fails; without a body it passes.
        let (addr, _) = raw_server(b"HTTP/1.1 200 OK\r\n\r\nhello").await;
        let result = probe(&http(addr.port()), addr, SHORT).await;
        assert!(
            matches!(result, Err(ProbeFailure::Malformed(_))),
            "{result:?}"
        );
        let (addr, _) = raw_server(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n").await;
        probe(&http(addr.port()), addr, SHORT).await.unwrap();
        let (addr, _) = raw_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        .await;
        probe(&http(addr.port()), addr, SHORT).await.unwrap();
    }

    #[tokio::test]
    async fn tcp_probe() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        probe(&HealthTarget::Tcp { port: addr.port() }, addr, SHORT)
            .await
            .unwrap();
        drop(listener);
        let result = probe(&HealthTarget::Tcp { port: addr.port() }, addr, SHORT).await;
        assert!(matches!(result, Err(ProbeFailure::Refused)), "{result:?}");
    }

    #[tokio::test]
    async fn ssl_and_https_probes() {
        let addr = https_server(200).await;
        probe(&HealthTarget::Ssl { port: addr.port() }, addr, SHORT)
            .await
            .unwrap();
        probe(
            &HealthTarget::Https {
                port: addr.port(),
                path: "/health".into(),
            },
            addr,
            SHORT,
        )
        .await
        .unwrap();
        let addr = https_server(404).await;
        let result = probe(
            &HealthTarget::Https {
                port: addr.port(),
                path: "/health".into(),
            },
            addr,
            SHORT,
        )
        .await;
        assert!(
            matches!(result, Err(ProbeFailure::Status(404))),
            "{result:?}"
        );

        // A plain HTTP server behind an SSL target.
        let (addr, _) = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        let result = probe(&HealthTarget::Ssl { port: addr.port() }, addr, SHORT).await;
        assert!(matches!(result, Err(ProbeFailure::Tls(_))), "{result:?}");
    }

    #[test]
    fn new_instance_in_service_on_first_pass() {
        let mut t = Thresholds::new(10, 2);
        assert_eq!(t.health(), InstanceHealth::REGISTRATION_IN_PROGRESS);
        assert_eq!(t.record(true), Some(InstanceHealth::IN_SERVICE));
        assert_eq!(t.record(true), None);
    }

    #[test]
    fn new_instance_fails_after_unhealthy_threshold() {
        let mut t = Thresholds::new(3, 4);
        for _ in 0..3 {
            assert_eq!(t.record(false), None);
            assert_eq!(t.health(), InstanceHealth::REGISTRATION_IN_PROGRESS);
        }
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        // From there, recovery needs the healthy threshold, not one pass.
        assert_eq!(
            t.record(true),
            Some(InstanceHealth::NOT_YET_HEALTHY_THRESHOLD)
        );
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(InstanceHealth::IN_SERVICE));
    }

    #[test]
    fn in_service_tolerates_fewer_than_unhealthy_threshold_failures() {
        let mut t = Thresholds::new(2, 3);
        t.record(true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert!(t.health().in_service());
        // A pass resets the failure count.
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        assert!(!t.health().in_service());
    }

    #[test]
    fn recovery_needs_exactly_healthy_threshold_consecutive_passes() {
        let mut t = Thresholds::new(3, 2);
        t.record(true);
        t.record(false);
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        assert_eq!(
            t.record(true),
            Some(InstanceHealth::NOT_YET_HEALTHY_THRESHOLD)
        );
        assert_eq!(t.record(true), None);
        // A failure in between resets the pass count.
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        assert_eq!(
            t.record(true),
            Some(InstanceHealth::NOT_YET_HEALTHY_THRESHOLD)
        );
        assert_eq!(t.record(true), None);
        assert_eq!(t.health(), InstanceHealth::NOT_YET_HEALTHY_THRESHOLD);
        assert_eq!(t.record(true), Some(InstanceHealth::IN_SERVICE));
    }

    fn fast_check(target: HealthTarget) -> HealthCheck {
        HealthCheck {
            target,
            interval: Duration::from_millis(60),
            timeout: Duration::from_millis(40),
            healthy_threshold: 3,
            unhealthy_threshold: 2,
        }
    }

    async fn next_event(events: &mut UnboundedReceiver<HealthEvent>) -> HealthEvent {
        time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("no health event within 3 s")
            .unwrap()
    }

    #[tokio::test]
    async fn checker_follows_the_instance() {
        let status = Arc::new(AtomicU16::new(200));
        let (addr, requests) = http_server("127.0.0.1", status.clone()).await;
        let (tx, mut events) = mpsc::unbounded_channel();
        let errors = IntCounter::new("errors", "test").unwrap();
        let id: Arc<str> = "i-0000001".into();
        let checker = Checker::start(
            fast_check(http(addr.port())),
            vec![(id.clone(), addr)],
            tx,
            errors.clone(),
        );

        let event = next_event(&mut events).await;
        assert_eq!(
            event,
            HealthEvent {
                instance_id: id.clone(),
                addr,
                health: InstanceHealth::IN_SERVICE
            }
        );

        status.store(500, Ordering::Relaxed);
        let before = requests.load(Ordering::Relaxed);
        assert_eq!(
            next_event(&mut events).await.health,
            InstanceHealth::FAILED_UNHEALTHY_THRESHOLD
        );
        let failed_checks = requests.load(Ordering::Relaxed) - before;
        // Two failures, plus at most one check that read the old status.
        assert!((2..=3).contains(&failed_checks), "{failed_checks} checks");

        status.store(200, Ordering::Relaxed);
        let before = requests.load(Ordering::Relaxed);
        assert_eq!(
            next_event(&mut events).await.health,
            InstanceHealth::NOT_YET_HEALTHY_THRESHOLD
        );
        assert_eq!(
            next_event(&mut events).await.health,
            InstanceHealth::IN_SERVICE
        );
        let passed_checks = requests.load(Ordering::Relaxed) - before;
        assert!((3..=4).contains(&passed_checks), "{passed_checks} checks");
        assert_eq!(errors.get(), 0);

        checker.remove(&id);
        time::sleep(Duration::from_millis(100)).await; // lets a check in flight finish
        let after_remove = requests.load(Ordering::Relaxed);
        time::sleep(Duration::from_millis(300)).await; // five intervals
        assert_eq!(
            requests.load(Ordering::Relaxed),
            after_remove,
            "checks continued after remove"
        );
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn checker_adds_at_run_time_and_counts_connection_errors() {
        let (up, _) = http_server("127.0.0.1", Arc::new(AtomicU16::new(200))).await;
        let down = closed_port().await;
        let (tx, mut events) = mpsc::unbounded_channel();
        let errors = IntCounter::new("errors", "test").unwrap();
        let checker = Checker::start(fast_check(http(0)), Vec::new(), tx, errors.clone());
        checker.add("i-up".into(), up);
        checker.add("i-down".into(), down);
        let mut seen = HashMap::new();
        while seen.len() < 2 {
            let event = next_event(&mut events).await;
            seen.insert(event.instance_id.to_string(), event.health);
        }
        assert_eq!(seen["i-up"], InstanceHealth::IN_SERVICE);
        assert_eq!(seen["i-down"], InstanceHealth::FAILED_UNHEALTHY_THRESHOLD);
        assert!(errors.get() >= 2);

        // Dropping the checker stops every check: the event channel closes once all tasks are gone.
        drop(checker);
        let closed = time::timeout(Duration::from_secs(3), async {
            while events.recv().await.is_some() {}
        })
        .await;
        assert!(closed.is_ok(), "check tasks outlived the checker");
    }

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
            target: http(0),
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
}
