//! The front end: client connections, served by elbe's own HTTP/1.x server or by hyper's HTTP/2 server.

pub mod http1;
pub mod http2;
