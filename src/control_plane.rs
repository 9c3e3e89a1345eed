//! The control plane: the mutable state (configuration, registrations, health, resolved names), the admin API
//! that changes it, and the snapshots it publishes to the data plane.

pub mod admin;
pub mod control;
pub mod discovery;
pub mod health;
