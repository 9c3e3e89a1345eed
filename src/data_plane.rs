//! The data plane: the hot path every request takes, from a node's accept loop to an instance and back.
//! Nothing here takes a lock; the routing state is an immutable snapshot the control plane swaps in.

pub(crate) mod back_end;
pub(crate) mod body;
pub(crate) mod elb_response;
pub(crate) mod front_end;
pub(crate) mod headers;
pub(crate) mod node;
pub(crate) mod passive;
pub(crate) mod proxy;
pub(crate) mod routing;
pub(crate) mod snapshot;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod tunnel;
