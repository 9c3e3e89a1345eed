//! The checker: every registered instance checked on ELB's schedule, and every change of its state sent out.
//!
//! The rule is ELB-SPEC §2.1 "Timing": each check is independent and spans the whole `Interval`, a slow response
//! does not push back the next check, and every registered instance is checked, healthy or not. So each instance
//! gets one small tokio task on its own fixed-rate schedule, and a slow instance never delays another or its own
//! next check; one supervisor task owns them all (`add` and `remove` are messages to it: no lock). Every timer is
//! tokio's (one timer wheel for all of them, no timer syscall per check), so tests pause the clock and step through
//! intervals without waiting.
//!
//! At scale (issue 18 item 5: 10,000 instances every second) two more rules hold. Schedules are spread: the
//! instances given at start, and any burst of instances added together (a bulk registration), have their first
//! checks spaced evenly over [`FIRST_CHECK_SPREAD`] (or the interval, if shorter), so their fixed-rate schedules
//! stay spread rather than firing in the same tick every interval; an instance added alone (or with a few others)
//! is checked at once. And at most [`MAX_CHECKS_IN_FLIGHT`] checks run at a time, so thousands of checks due together (or
//! thousands of hung instances) never hold thousands of sockets open; a check waiting for its turn starts its
//! `Timeout` only once it runs, so the wait never fails a healthy instance (it may skip a tick instead, as a stalled
//! runtime would).
//!
//! Trade-offs: the checker reports only changes; whoever owns the instance list (the control plane) records
//! REGISTRATION_IN_PROGRESS when it adds an instance and ignores events for instances it no longer knows (a removal
//! races with a check in flight). A task per instance costs memory per instance, not per check; the ignored tests in
//! `checker_cost` measure it with 2,000 and 10,000 instances, beside the kernel's floor for the same connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{self, Instant, MissedTickBehavior};

use super::probe::{probe, ProbeFailure};
use super::states::InstanceHealth;
use super::thresholds::Thresholds;
use crate::config::{HealthCheck, HealthTarget};

/// Instances given to [`Checker::start`] have their first checks spread evenly over this long (or the interval, if
/// shorter), so a start with thousands of instances does not probe them all in the same millisecond, yet every one
/// gets its first verdict within a second. Instances added later are checked right away, unless they come in a
/// burst of more than [`SPREAD_BURSTS_OF_MORE_THAN`], which is spread the same way.
const FIRST_CHECK_SPREAD: Duration = Duration::from_secs(1);

/// The most checks one checker runs at once. Spread evenly, 10,000 instances checked every second with checks of
/// about a millisecond have about ten in flight; the cap matters when many are due together or hang until their
/// timeout, and then bounds the sockets (and file descriptors) the checker holds. Hung checks hold their slots
/// for the timeout: while hung instances x timeout / interval stays under the cap (e.g. 1,000 of 10,000 instances
/// hanging, checked every second with a 500 ms timeout: 500 slots) nothing waits; past it, checks queue for a slot
/// and instances are checked late, the one case where a slow instance delays others (ELB-SPEC §2.1 says it never
/// does): the price of a bound on sockets, said here rather than hidden.
pub(crate) const MAX_CHECKS_IN_FLIGHT: usize = 512;

/// A burst of more adds than this (a bulk registration) has its first checks spread over [`FIRST_CHECK_SPREAD`];
/// a few added together are all checked at once, as a lone add is: a handful of checks in the same tick costs
/// nothing, and a newly registered instance gets its verdict soonest.
const SPREAD_BURSTS_OF_MORE_THAN: usize = 16;

/// A change in one instance's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub instance_id: Arc<str>,
    /// The address probed; lets the receiver drop a stale event for an instance re-added at another address.
    pub addr: SocketAddr,
    pub health: InstanceHealth,
}

/// One check of one instance as the checker sees it: [`probe`] over the network in production. Tests script it, so
/// that the schedule runs on a paused clock without sockets: a paused clock jumps ahead whenever the runtime only
/// waits on the kernel, which would time real probes out at random.
trait Prober: Send + Sync + 'static {
    fn check(
        &self,
        target: &HealthTarget,
        addr: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ProbeFailure>> + Send;
}

/// The real probe, over the network.
struct Network;

impl Prober for Network {
    fn check(
        &self,
        target: &HealthTarget,
        addr: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ProbeFailure>> + Send {
        probe(target, addr, timeout)
    }
}

/// What every check task of one checker shares.
struct Shared<P> {
    check: HealthCheck,
    events: UnboundedSender<HealthEvent>,
    connection_errors: IntCounter,
    prober: P,
    /// [`MAX_CHECKS_IN_FLIGHT`] permits: a check runs while it holds one.
    in_flight: Semaphore,
}

/// When an instance's first check is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstCheck {
    /// This long after the checker starts (its place in the start's spread).
    After(Duration),
    /// Right away, or, when other instances were added in the same burst, at its place in the burst's spread.
    Soon,
}

enum Command {
    Add {
        instance_id: Arc<str>,
        addr: SocketAddr,
        first_check: FirstCheck,
    },
    Remove {
        instance_id: Arc<str>,
    },
}

/// Checks a set of instances on ELB's schedule and sends every state change. Dropping it stops every check.
///
/// One supervisor task owns the per-instance tasks (no lock: `add` and `remove` are messages to it); aborting the
/// supervisor drops its `JoinSet`, which aborts them all.
pub(crate) struct Checker {
    commands: UnboundedSender<Command>,
    supervisor: AbortHandle,
}

impl Checker {
    /// Starts checking each `(instance_id, addr)`; must be called inside a tokio runtime. Each instance starts
    /// REGISTRATION_IN_PROGRESS (not sent); every later change is sent on `events`. Every probe failure that is a
    /// connection error increments `connection_errors` (CloudWatch counts health-check connection failures in
    /// BackendConnectionErrors).
    pub(crate) fn start(
        check: HealthCheck,
        instances: Vec<(Arc<str>, SocketAddr)>,
        events: UnboundedSender<HealthEvent>,
        connection_errors: IntCounter,
    ) -> Checker {
        Checker::start_with(Network, check, instances, events, connection_errors)
    }

    /// [`Checker::start`] with the probe given: the tests' seam.
    fn start_with<P: Prober>(
        prober: P,
        check: HealthCheck,
        instances: Vec<(Arc<str>, SocketAddr)>,
        events: UnboundedSender<HealthEvent>,
        connection_errors: IntCounter,
    ) -> Checker {
        let (commands, receiver) = mpsc::unbounded_channel();
        let spread = check.interval.min(FIRST_CHECK_SPREAD);
        let count = instances.len().max(1) as u32;
        for (i, (instance_id, addr)) in instances.into_iter().enumerate() {
            let first_check = FirstCheck::After(spread * i as u32 / count);
            // The receiver is alive: it is moved into the supervisor below.
            let _ = commands.send(Command::Add {
                instance_id,
                addr,
                first_check,
            });
        }
        let shared = Arc::new(Shared {
            check,
            events,
            connection_errors,
            prober,
            in_flight: Semaphore::new(MAX_CHECKS_IN_FLIGHT),
        });
        let supervisor = tokio::spawn(supervise(shared, receiver)).abort_handle();
        Checker {
            commands,
            supervisor,
        }
    }

    /// Starts checking an instance now (first check right away, or spread with the others of a burst of adds); an
    /// instance with the same id is replaced.
    pub(crate) fn add(&self, instance_id: Arc<str>, addr: SocketAddr) {
        // Fails only after stop, when there is nothing left to add to.
        let _ = self.commands.send(Command::Add {
            instance_id,
            addr,
            first_check: FirstCheck::Soon,
        });
    }

    /// Stops checking an instance; a check in flight is cancelled.
    pub(crate) fn remove(&self, instance_id: &str) {
        let _ = self.commands.send(Command::Remove {
            instance_id: instance_id.into(),
        });
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// Runs the per-instance tasks: starts, replaces and stops them as commands arrive, until the checker goes away.
async fn supervise<P: Prober>(shared: Arc<Shared<P>>, mut commands: UnboundedReceiver<Command>) {
    let mut tasks = Tasks {
        set: JoinSet::new(),
        running: HashMap::new(),
    };
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                // Everything already queued is one burst, so its run-time adds can be spread together.
                let mut burst = vec![command];
                while let Ok(command) = commands.try_recv() {
                    burst.push(command);
                }
                tasks.apply(&shared, burst);
            },
            // Reaps aborted tasks so the set does not grow with churn.
            Some(_) = tasks.set.join_next(), if !tasks.set.is_empty() => {}
        }
    }
}

/// The per-instance tasks the supervisor owns, by instance id.
struct Tasks {
    set: JoinSet<()>,
    running: HashMap<Arc<str>, AbortHandle>,
}

impl Tasks {
    /// Applies a burst of commands in order; when it has more than [`SPREAD_BURSTS_OF_MORE_THAN`]
    /// [`FirstCheck::Soon`] adds, their first checks are spaced evenly over the spread in the order they came (a
    /// few are checked at once).
    fn apply<P: Prober>(&mut self, shared: &Arc<Shared<P>>, burst: Vec<Command>) {
        let soon = burst
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Add {
                        first_check: FirstCheck::Soon,
                        ..
                    }
                )
            })
            .count();
        let spread = if soon > SPREAD_BURSTS_OF_MORE_THAN {
            shared.check.interval.min(FIRST_CHECK_SPREAD)
        } else {
            Duration::ZERO
        };
        let soon = soon.max(1) as u32;
        let mut nth = 0;
        for command in burst {
            match command {
                Command::Add {
                    instance_id,
                    addr,
                    first_check,
                } => {
                    let after = match first_check {
                        FirstCheck::After(after) => after,
                        FirstCheck::Soon => {
                            nth += 1;
                            spread * (nth - 1) / soon
                        }
                    };
                    let task = check_instance(shared.clone(), instance_id.clone(), addr, after);
                    if let Some(old) = self.running.insert(instance_id, self.set.spawn(task)) {
                        old.abort();
                    }
                }
                Command::Remove { instance_id } => {
                    if let Some(task) = self.running.remove(&instance_id) {
                        task.abort();
                    }
                }
            }
        }
    }
}

/// Checks one instance every `interval` until aborted (or until nobody listens for events).
async fn check_instance<P: Prober>(
    shared: Arc<Shared<P>>,
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
        // Never fails: the semaphore is not closed while the checker (which owns `shared`) runs.
        let Ok(_permit) = shared.in_flight.acquire().await else {
            return;
        };
        // Boxed: a TLS probe's state is large, and this task lives for the instance's whole registration.
        let outcome = Box::pin(shared.prober.check(&check.target, addr, check.timeout)).await;
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
mod spread_tests;
#[cfg(test)]
mod tests;
