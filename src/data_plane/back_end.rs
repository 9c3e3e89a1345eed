//! The back end: connections to instances, elbe's HTTP/1.1 client over them, and their pools.

pub mod error;
pub mod http1;
pub mod pool;
pub mod target;
