//! The front end: client connections, served by elbe's own HTTP/1.x and HTTP/2 servers.

pub(crate) mod http1;
pub(crate) mod http2;
