//! Every default in one place. Where the value is ELB's, the doc comment cites ELB-SPEC.md.
//!
//! Rule: the validation modules take every default from here, so this file answers "what does elbe do when the
//! key is missing" (ELB-SPEC §2.1 health checks, §3 cross-zone, §4 names, §5 idle timeout and draining, §8 surge
//! queue) without reading the checks.
//!
//! Trade-off: ELB's API defaults win over its console's where they differ (cross-zone and draining were enabled by
//! the console, disabled by the API), because elbe emulates the API; the doc comments say so where it matters.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// The admin listener (`/metrics`, `/healthz`, `/status`): loopback only, so nothing is exposed by default.
pub const ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9900));
/// DNS names are `<lb-name>-<digits>.<region>.<domain>` (ELB-SPEC §4 uses `elb.amazonaws.com`); `.localhost`
/// never leaks to the public DNS.
pub const DNS_DOMAIN: &str = "elb.localhost";
/// The region part of DNS names; a name that cannot be mistaken for a real AWS region.
pub const REGION: &str = "local-1";
/// ELB API default: cross-zone load balancing disabled (ELB-SPEC §3; the console enabled it).
pub const CROSS_ZONE_LOAD_BALANCING: bool = false;
/// ELB `ConnectionSettings.IdleTimeout` default: 60 s (ELB-SPEC §5).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// ELB API default: connection draining disabled (ELB-SPEC §5; the console enabled it).
pub const CONNECTION_DRAINING_ENABLED: bool = false;
/// ELB `ConnectionDraining.Timeout` default: 300 s (ELB-SPEC §5).
pub const CONNECTION_DRAINING_TIMEOUT: Duration = Duration::from_secs(300);
/// elbe extension, on by default: a connection to an instance that fails while proxying counts as a failed
/// health check, so a dead instance leaves rotation before the next active check. ELB only used active
/// checks; set `passive_health_checks = false` to get exactly that.
pub const PASSIVE_HEALTH_CHECKS: bool = true;
/// ELB `HealthCheck.Interval` default after CreateLoadBalancer: 30 s (ELB-SPEC §2.1).
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// ELB `HealthCheck.Timeout` default: 5 s (ELB-SPEC §2.1).
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// ELB `HealthCheck.HealthyThreshold` default: 10 (ELB-SPEC §2.1).
pub const HEALTHY_THRESHOLD: u32 = 10;
/// ELB `HealthCheck.UnhealthyThreshold` default: 2 (ELB-SPEC §2.1).
pub const UNHEALTHY_THRESHOLD: u32 = 2;
/// The whole request head must arrive within this time, else 408 and close (slowloris protection); a new
/// connection must send its first byte within it too. Never longer than the listener's idle timeout: the node
/// uses the shorter of the two (DESIGN.md "Client timers never outlast ELB's").
pub const REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake that takes longer is abandoned.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger request heads get 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 65536;
/// A smaller `max_request_header_bytes` would refuse ordinary requests (a browser's head with its cookies runs
/// to several KiB); nginx's default large header buffer is the same 8 KiB.
pub const MIN_REQUEST_HEADER_BYTES: usize = 8192;
/// The largest `max_request_header_bytes` a configuration may set: 16 MiB is 256 times the default and far more
/// than any browser or client sends, and a parsed head's offsets are `u32`s (`http1::head::Span`).
pub const MAX_REQUEST_HEADER_BYTES_LIMIT: usize = 16 << 20;
/// More header fields than this get 431.
pub const MAX_HEADERS: usize = 100;
/// Longer request targets get 414.
pub const MAX_URI_BYTES: usize = 16384;
/// Open client connections per process; further connections wait in the kernel's accept backlog.
pub const MAX_CONNECTIONS: usize = 10000;
/// Connections the kernel queues for each listener before elbe accepts them (`listen(2)`'s backlog), the
/// `max_connections` overflow included. Linux's default `net.core.somaxconn` since 5.4, which caps it: a burst of
/// 1,000 connects fits (std's 128 overflowed, costing clients a 1 s SYN retransmit; nginx uses 511).
pub const LISTEN_BACKLOG: u32 = 4096;
/// The largest `listen_backlog` accepted: `somaxconn`'s historical 16-bit limit; a larger value is a typo.
pub const MAX_LISTEN_BACKLOG: u32 = 65535;
/// SIGTERM drain deadline (connection draining's timeout applies instead when draining is enabled).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// elbe extension: how long to wait for a TCP connect to an instance before the attempt counts as failed.
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// elbe extension: idle keep-alive connections each instance's pool keeps whatever the demand (ELB "pre-opens and
/// keeps" back-end connections, ELB-SPEC §1.1). A floor, not a cap: the pool keeps as many as the instance's
/// recent peak of concurrent requests needs, and closes the surplus once that peak is an idle timeout old.
pub const BACKEND_IDLE_CONNECTIONS: usize = 128;
/// elbe extension: no cap on an instance's outstanding requests by default, so the surge queue is only used
/// when a cap is set (ELB queued when its connections to healthy instances were all busy, ELB-SPEC §8).
pub const BACKEND_MAX_REQUESTS: usize = 0;
/// ELB's surge queue size: 1,024 requests per node (ELB-SPEC §8).
pub const SURGE_QUEUE_SIZE: usize = 1024;
/// DNS discovery re-resolves no more often than this, so a TTL of 0 does not spin.
pub const DISCOVERY_MIN_TTL: Duration = Duration::from_secs(1);
/// DNS discovery trusts an answer for no longer than this, so a record changed behind a long TTL is seen
/// within five minutes.
pub const DISCOVERY_MAX_TTL: Duration = Duration::from_secs(300);
/// ELB's limit on a health-check target's length (ELB-SPEC §2.1).
pub const MAX_HEALTH_TARGET_LEN: usize = 1024;
/// ELB's limit on a load balancer name's length (ELB-SPEC §4).
pub const MAX_LOAD_BALANCER_NAME_LEN: usize = 32;
