//! Health checks: probing instances on ELB's schedule and counting the results into DescribeInstanceHealth states.
//!
//! The rules are ELB-SPEC §2. A [`probe`](fn@probe::probe) is one check of one instance: TCP connects, SSL completes a TLS handshake
//! without validating the certificate, HTTP/HTTPS sends `GET <path>` and passes only on status exactly `200` whose
//! body, if any, is framed by `Content-Length` or chunked encoding, all within the check's `Timeout`. [`Thresholds`](thresholds::Thresholds)
//! turns consecutive results into the states and exact strings of §2.2: a new instance is InService after its first
//! pass (DESIGN.md "A new instance"), an InService instance goes OutOfService after `UnhealthyThreshold` consecutive
//! failures, and comes back after `HealthyThreshold` consecutive passes. The [`Checker`] runs one small tokio task
//! per instance, each on its own fixed-rate schedule, so a slow instance never delays another or its own next check.
//!
//! Layout, in the order a check flows: [`checker`] schedules the checks and sends the changes; [`probe`](mod@probe)
//! makes one check (its TLS client in `probe::tls`); [`thresholds`] counts the results; [`states`] names the
//! outcome. Trade-offs: see each module. In short, a probe reads only the response head (bounded to
//! [`MAX_RESPONSE_HEAD`](probe::MAX_RESPONSE_HEAD)), one rustls configuration serves every probe, and the checker reports only changes, leaving
//! REGISTRATION_IN_PROGRESS and stale events to whoever owns the instance list (the control plane).

pub(crate) mod checker;
#[cfg(test)]
mod checker_cost;
#[cfg(test)]
mod fake_instance;
pub(crate) mod probe;
pub(crate) mod states;
pub(crate) mod thresholds;

pub(crate) use checker::{Checker, HealthEvent};
pub(crate) use states::InstanceHealth;
