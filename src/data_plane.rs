//! The data plane: the hot path every request takes, from a node's accept loop to an instance and back.
//! Nothing here takes a lock; the routing state is an immutable snapshot the control plane swaps in.

pub mod back_end;
pub mod body;
pub mod elb_response;
pub mod front_end;
pub mod headers;
pub mod node;
pub mod passive;
pub mod proxy;
pub mod routing;
pub mod snapshot;
pub mod tls;
