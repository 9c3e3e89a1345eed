//! The control plane: the mutable state (configuration, registrations, health, resolved names), the admin API
//! and the ELB API (`api`) that change it, the state store that keeps those changes across restarts, and the
//! snapshots it publishes to the data plane.

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod control;
pub(crate) mod discovery;
pub(crate) mod health;
pub(crate) mod state_dir;
pub(crate) mod store;
