//! The back end: connections to instances (plain or TLS, `tls`), elbe's HTTP/1.1 client over them, and their
//! pools.

pub(crate) mod cut;
pub(crate) mod error;
pub(crate) mod http1;
pub(crate) mod pool;
pub(crate) mod target;
pub(crate) mod tls;
