//! The front end: client connections, served by elbe's own HTTP/1.x server or by hyper's HTTP/2 server.

pub(crate) mod http1;
pub(crate) mod http2;
