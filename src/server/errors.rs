//! Why elbe could not start, and why a reload was refused: typed, each keeping its cause, each naming the load
//! balancer, listener or key it is about (the message is what the log and `/status` show).

use std::net::SocketAddr;

use crate::control_plane::discovery::DiscoveryError;
use crate::control_plane::state_dir::StateDirError;
use crate::control_plane::store::StoreError;
use crate::data_plane::tls::TlsError;

/// Why elbe could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket (node listener, admin listener, DNS responder) that could not be bound.
    #[error("cannot listen on {address} ({what}): {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Which socket, e.g. `web us-east-1a HTTP listener`.
        what: String,
        #[source]
        /// The `bind(2)` or `listen(2)` error.
        source: std::io::Error,
    },
    /// A `host:port` instance that does not resolve.
    #[error("{0}")]
    Resolve(#[from] UnresolvedInstance),
    /// DNS discovery could not start (a bad resolver configuration).
    #[error("DNS discovery: {0}")]
    Discovery(#[source] DiscoveryError),
    /// A load balancer's access-log file that cannot be opened.
    #[error("load balancer {load_balancer}: access log: {source}")]
    AccessLog {
        /// The load balancer's name.
        load_balancer: String,
        #[source]
        /// The `open(2)` error.
        source: std::io::Error,
    },
    /// The state folder (`state_dir`) or the stickiness key in it cannot be read or written.
    #[error("{0}")]
    StateDir(#[from] StateDirError),
    /// The state store in `state_dir` cannot be opened or read (another elbe holds it, or it is damaged).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// `[cluster]` in a file given to an elbe built without cluster mode.
    #[error("[cluster]: this elbe was built without cluster mode; build it with `cargo build --release --features cluster` (which needs protoc: Debian's protobuf-compiler and libprotobuf-dev), or remove [cluster] to run on the embedded store")]
    ClusterNotBuilt,
    /// Cluster mode was asked for a configuration without `[cluster]`.
    #[error("cluster mode needs a [cluster] table in the configuration")]
    NotCluster,
    /// Cluster mode could not load the cluster's state at start: etcd did not answer and there was no usable
    /// local copy (the source says both), or a record does not read.
    #[error("[cluster]: cannot load the cluster's state from etcd at {endpoints}: {source}")]
    ClusterStore {
        /// `[cluster] etcd`, comma-separated.
        endpoints: String,
        #[source]
        /// What the store said.
        source: StoreError,
    },
    /// An HTTPS or SSL listener whose certificates or `ssl_policy` do not load.
    #[error("load balancer {load_balancer}, listener on port {port}: {source}")]
    Tls {
        /// The load balancer's name.
        load_balancer: String,
        /// The listener's `load_balancer_port` as configured.
        port: u16,
        #[source]
        /// What the TLS module refused.
        source: Box<TlsError>,
    },
    /// The TLS client for an instance port's HTTPS/SSL instances (its `backend_ca`, or the unverified one) that
    /// rustls would not build.
    #[error("load balancer {load_balancer}, instance_port {instance_port}: TLS client to instances: {source}")]
    InstanceTls {
        /// The load balancer's name.
        load_balancer: String,
        /// The instance port.
        instance_port: u16,
        #[source]
        /// Why rustls refused it.
        source: rustls::Error,
    },
}

/// A `host:port` instance whose name does not resolve, at start or on reload.
#[derive(Debug, thiserror::Error)]
#[error("instance {instance}: cannot resolve {host}: {source}")]
pub struct UnresolvedInstance {
    /// The instance's id.
    pub instance: String,
    /// The name that did not resolve.
    pub host: String,
    #[source]
    /// The resolver's error.
    pub source: DiscoveryError,
}

/// Why a reload was refused: nothing changed, the previous configuration keeps serving. The message is what
/// `/status` shows as `last_reload_error`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not parse or validate.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// A new `host:port` instance that does not resolve.
    #[error("{0}")]
    Resolve(#[from] UnresolvedInstance),
    /// A part of the file a running elbe does not change: the process-wide sockets and settings, read once.
    #[error("{key} changed: a reload does not apply it (restart elbe to change it)")]
    NeedsRestart {
        /// The key that changed, e.g. `admin.listen`.
        key: &'static str,
    },
    /// What would stop elbe from starting with this file stops the reload the same way: a new listener's socket
    /// that cannot be bound, a certificate that does not load, an access log that cannot be opened.
    #[error(transparent)]
    Start(#[from] StartError),
}
