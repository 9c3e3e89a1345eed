//! Choosing an instance: ELB's balancing algorithms and its surge queue.

pub(crate) mod balancer;
pub(crate) mod surge;
