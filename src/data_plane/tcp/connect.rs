//! A TCP/SSL connection's instance: picked round robin (ELB-SPEC §3), queued in the node's surge queue when every
//! instance is at its limit (§8), connected, and on a failed connect the next instance is tried, each at most
//! once: no byte of the client's was sent, so moving on is always safe. Every failed connect counts in
//! BackendConnectionErrors (§10) and is reported to passive health checks. Once connected, the PROXY v1 line goes
//! first when the instance port has a ProxyProtocolPolicyType (§7), then TLS when the instance speaks SSL.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::either::Either;

use super::proxy_protocol;
use super::Layer4;
use crate::data_plane::back_end::error::BackendError;
use crate::data_plane::back_end::http1::InstanceStream;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::proxy::ListenerContext;
use crate::data_plane::routing::balancer;
use crate::data_plane::routing::surge::Outstanding;

/// A connection made to an instance, outstanding on it (the surge queue's count) until dropped.
pub(super) struct Connected {
    pub stream: InstanceStream,
    pub outstanding: Outstanding,
    /// From the first connect attempt to the connection being ready (ELB's TCP Latency).
    pub connect_time: Duration,
}

/// Why a client connection got no instance: ELB closes it.
#[derive(Debug, thiserror::Error)]
pub(super) enum NoInstance {
    #[error("no instance is in service")]
    NoneInService,
    #[error("the surge queue is full (spillover)")]
    Spillover,
    #[error("no instance freed up within the idle timeout")]
    QueueTimeout,
    #[error("every instance failed")]
    AllFailed(#[source] ConnectError),
}

/// Why connecting to one instance failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error(transparent)]
    Tcp(#[from] BackendError),
    #[error("cannot send the PROXY line to instance {addr}")]
    ProxyLine {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with instance {addr} failed")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no TLS client for SSL instances (rustls refused its configuration at start)")]
    NoTlsClient,
    #[error("TLS handshake with instance {addr} did not finish in time")]
    TlsTimeout { addr: SocketAddr },
}

/// Picks an instance for a client at `client` and connects to it, trying the others on failure.
pub(super) async fn open(
    context: &ListenerContext,
    layer4: &Layer4,
    client: SocketAddr,
) -> Result<Connected, NoInstance> {
    let mut target = pick(context, layer4).await?;
    let started = Instant::now();
    let mut tried: Vec<Arc<Target>> = Vec::new();
    loop {
        let outstanding = Outstanding::begin(target.clone());
        match connect(&target, layer4, client).await {
            Ok(stream) => {
                return Ok(Connected {
                    stream,
                    outstanding,
                    connect_time: started.elapsed(),
                })
            }
            Err(error) => {
                drop(outstanding);
                tracing::debug!(instance = %target.instance_id, %error, "connect failed");
                context.metrics.backend_connection_errors.inc();
                if let Some(passive) = &context.passive {
                    passive.report(&target);
                }
                tried.push(target);
                match next_untried(context, layer4, &tried) {
                    Some(next) => target = next,
                    None => return Err(NoInstance::AllFailed(error)),
                }
            }
        }
    }
}

/// The next instance round robin among those with room; when every one is at its limit, the connection waits in
/// the surge queue for whichever frees up first (ELB-SPEC §8: the queue holds connections, not a place in the
/// rotation).
async fn pick(context: &ListenerContext, layer4: &Layer4) -> Result<Arc<Target>, NoInstance> {
    let idle_timeout = {
        let routes = context.routes.load();
        let candidates = &routes.candidates;
        let first = balancer::pick_round_robin(candidates, &layer4.cursor)
            .ok_or(NoInstance::NoneInService)?;
        if context.surge.has_room(first) {
            return Ok(first.clone());
        }
        let start = candidates
            .iter()
            .position(|c| Arc::ptr_eq(c, first))
            .unwrap_or(0);
        let with_room = (1..candidates.len())
            .map(|i| &candidates[(start + i) % candidates.len()])
            .find(|c| context.surge.has_room(c));
        if let Some(target) = with_room {
            return Ok(target.clone());
        }
        routes.idle_timeout
    };
    let deadline = Instant::now() + idle_timeout;
    context
        .surge
        .wait_for_instance(&context.routes, &context.metrics, deadline)
        .await
        .map_err(|why| match why {
            ElbResponse::GatewayTimeout => NoInstance::QueueTimeout,
            _ if context.routes.load().candidates.is_empty() => NoInstance::NoneInService,
            _ => NoInstance::Spillover,
        })
}

/// The next candidate round robin that has not been tried yet.
fn next_untried(
    context: &ListenerContext,
    layer4: &Layer4,
    tried: &[Arc<Target>],
) -> Option<Arc<Target>> {
    let routes = context.routes.load();
    let candidates = &routes.candidates;
    let start = layer4.cursor.fetch_add(1, Ordering::Relaxed);
    (0..candidates.len())
        .map(|i| &candidates[(start + i) % candidates.len()])
        .find(|c| !tried.iter().any(|t| Arc::ptr_eq(t, c)))
        .cloned()
}

/// Connects to one instance: TCP under the connect timeout, the PROXY line, then TLS when configured.
async fn connect(
    target: &Target,
    layer4: &Layer4,
    client: SocketAddr,
) -> Result<InstanceStream, ConnectError> {
    // The PROXY line goes before TLS, so TCP is opened alone and TLS comes here.
    let mut stream = target.pool.connect_tcp().await?;
    let addr = target.addr;
    if layer4.send_proxy_protocol {
        let line = proxy_protocol::v1_line(client, layer4.node);
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(|source| ConnectError::ProxyLine { addr, source })?;
    }
    if !layer4.ssl_to_instance {
        return Ok(Either::Left(stream));
    }
    let Some(config) = &layer4.instance_tls else {
        return Err(ConnectError::NoTlsClient);
    };
    // ELB sends no SNI to instances (ELB-SPEC §1); rustls needs a name all the same, and the client
    // configuration has SNI off, so the address stands in (never checked: `back_end::tls`).
    let name = ServerName::IpAddress(addr.ip().into());
    let handshake = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream);
    match tokio::time::timeout(layer4.connect_timeout, handshake).await {
        Ok(Ok(tls)) => Ok(Either::Right(Box::new(tls))),
        Ok(Err(source)) => Err(ConnectError::Tls { addr, source }),
        Err(_) => Err(ConnectError::TlsTimeout { addr }),
    }
}
