//! Choosing an instance: ELB's balancing algorithms and its surge queue.

pub mod balancer;
pub mod surge;
