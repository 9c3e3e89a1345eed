//! Why elbe could not start, and why a reload was refused: typed, each keeping its cause, each naming the load
//! balancer, listener or key it is about (the message is what the log and `/status` show).

use std::net::SocketAddr;

use crate::config::Protocol;
use crate::control_plane::discovery::DiscoveryError;
use crate::control_plane::state_dir::StateDirError;
use crate::data_plane::tls::TlsError;

/// Why elbe could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address} ({what}): {source}")]
    Bind {
        address: SocketAddr,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Resolve(#[from] UnresolvedInstance),
    #[error("DNS discovery: {0}")]
    Discovery(#[source] DiscoveryError),
    #[error("load balancer {load_balancer}: {protocol} listeners are not supported yet")]
    Unsupported {
        load_balancer: String,
        protocol: Protocol,
    },
    #[error("load balancer {load_balancer}: access log: {source}")]
    AccessLog {
        load_balancer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    StateDir(#[from] StateDirError),
    #[error("load balancer {load_balancer}, listener on port {port}: {source}")]
    Tls {
        load_balancer: String,
        port: u16,
        #[source]
        source: Box<TlsError>,
    },
}

/// A `host:port` instance whose name does not resolve, at start or on reload.
#[derive(Debug, thiserror::Error)]
#[error("instance {instance}: cannot resolve {host}: {source}")]
pub struct UnresolvedInstance {
    pub instance: String,
    pub host: String,
    #[source]
    pub source: DiscoveryError,
}

/// Why a reload was refused: nothing changed, the previous configuration keeps serving. The message is what
/// `/status` shows as `last_reload_error`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Resolve(#[from] UnresolvedInstance),
    /// A part of the file a running elbe does not change: the process-wide sockets and settings, read once.
    #[error("{key} changed: a reload does not apply it (restart elbe to change it)")]
    NeedsRestart { key: &'static str },
    /// What would stop elbe from starting with this file stops the reload the same way: a new listener's socket
    /// that cannot be bound, a certificate that does not load, an access log that cannot be opened.
    #[error(transparent)]
    Start(#[from] StartError),
}
