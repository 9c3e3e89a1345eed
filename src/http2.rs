//! HTTP/2 on the wire (RFC 9113), the pieces of elbe's own HTTP/2 server (issue 18: hyper's `h2` machinery is
//! most of an HTTP/2 request's cost): `hpack`, the header compression codec. No elbe types here, as in `http1`.

pub(crate) mod hpack;
