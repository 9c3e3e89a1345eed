//! Deregistration and connection draining (ELB-SPEC §5).
//!
//! With `connection_draining` on, a deregistered instance gets no new requests at once, reports InService /
//! "Instance deregistration currently in progress." while the requests on it finish, and is gone when the last one
//! ends or the drain's timeout passes (then its remaining requests are cut: ELB's 504). With draining off it is
//! gone at once and the requests on it are cut. Either way its health checks and DNS watch stop at once, and its
//! idle pooled connections close. Registering the instance again during its drain ends the drain. The trade-off:
//! one task per drain waits on its targets' "last request ended" signal; nothing polls.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{find_lb, Control, ControlError};
use crate::control_plane::health::InstanceHealth;
use crate::control_plane::store::Versioned;
use crate::data_plane::back_end::target::Target;

impl Control {
    /// Deregisters an instance whose deregistration the state store keeps (`kept`, see
    /// [`Control::deregister`]), unless a newer registration of it was applied meanwhile; returns whether it was
    /// registered.
    pub(super) fn deregister_kept(
        self: &Arc<Self>,
        load_balancer: &str,
        instance_id: &str,
        kept: Versioned,
    ) -> Result<bool, ControlError> {
        // deregistration and drain end: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        if !state.records.take(kept) {
            return Ok(true); // registered again meanwhile, by a newer write: that one stands
        }
        let lb = find_lb(&mut state, load_balancer)?;
        let draining = lb.config.connection_draining.clone();
        let Some(instance) = lb.instances.iter_mut().find(|i| &*i.id == instance_id) else {
            return Ok(false);
        };
        if instance.draining.is_some() {
            return Ok(true);
        }
        let drain = draining.enabled.then(|| {
            let number = self.next_drain();
            instance.draining = Some(number);
            instance.health = InstanceHealth::DEREGISTRATION_IN_PROGRESS;
            number
        });
        if drain.is_none() {
            lb.instances.retain(|existing| &*existing.id != instance_id);
        }
        Self::sync_checker(&mut state, load_balancer, &instance_id.into(), "", None);
        state.watchers.stop_instance(load_balancer, instance_id);
        let targets: Vec<Arc<Target>> = state
            .targets
            .iter()
            .filter(|(key, _)| *key.0 == *load_balancer && *key.1 == *instance_id)
            .map(|(_, target)| target.clone())
            .collect();
        for target in &targets {
            target.retire();
        }
        // Without a drain the instance is gone now: publishing cuts its targets.
        self.publish(&mut state);
        drop(state);
        if let Some(number) = drain {
            tracing::info!(%load_balancer, instance = %instance_id, timeout = ?draining.timeout, "draining instance");
            let control = Arc::downgrade(self);
            let (load_balancer, instance_id) = (load_balancer.to_owned(), instance_id.to_owned());
            tokio::spawn(drain_then_remove(
                control,
                load_balancer,
                instance_id,
                number,
                targets,
                draining.timeout,
            ));
        }
        Ok(true)
    }

    /// A number no other drain of this process has had.
    pub(super) fn next_drain(&self) -> u64 {
        self.drains
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The drain `number` of an instance is over (its requests ended, or the timeout passed): the instance is gone,
    /// unless a registration ended the drain meanwhile.
    fn finish_drain(&self, load_balancer: &str, instance_id: &str, number: u64) {
        // deregistration and drain end: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        let Ok(lb) = find_lb(&mut state, load_balancer) else {
            return;
        };
        let before = lb.instances.len();
        lb.instances
            .retain(|i| !(&*i.id == instance_id && i.draining == Some(number)));
        if lb.instances.len() != before {
            tracing::info!(%load_balancer, instance = %instance_id, "drained; instance deregistered");
            self.publish(&mut state);
        }
    }
}

/// Waits until no request is outstanding on any of the instance's targets, or `timeout`, then removes it.
pub(super) async fn drain_then_remove(
    control: Weak<Control>,
    load_balancer: String,
    instance_id: String,
    number: u64,
    targets: Vec<Arc<Target>>,
    timeout: Duration,
) {
    let drained = async {
        for target in &targets {
            target.drained().await;
        }
    };
    if tokio::time::timeout(timeout, drained).await.is_err() {
        tracing::info!(%load_balancer, instance = %instance_id, "drain timeout passed; cutting the requests left");
    }
    if let Some(control) = control.upgrade() {
        control.finish_drain(&load_balancer, &instance_id, number);
    }
}
