//! Passive health checks, the data plane's side (elbe's extension): an instance that refuses or resets a
//! connection during real traffic is reported here, on a channel the control plane reads, so the request path
//! never calls into the control plane. The control plane takes the instance out of rotation until its next
//! passing check.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::data_plane::back_end::target::Target;

/// A connection to an instance failed during real traffic.
#[derive(Debug, Clone)]
pub struct PassiveFailure {
    pub load_balancer: Arc<str>,
    pub instance_id: Arc<str>,
    pub addr: SocketAddr,
}

/// The request path's handle for reporting passive failures: one lock-free channel send per failure.
#[derive(Debug, Clone)]
pub(crate) struct PassiveReporter {
    pub load_balancer: Arc<str>,
    pub events: UnboundedSender<PassiveFailure>,
}

impl PassiveReporter {
    pub(crate) fn report(&self, target: &Target) {
        let _ = self.events.send(PassiveFailure {
            load_balancer: self.load_balancer.clone(),
            instance_id: target.instance_id.clone(),
            addr: target.addr,
        });
    }
}
