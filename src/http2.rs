//! HTTP/2 on the wire (RFC 9113), the pieces of elbe's own HTTP/2 server (issue 18: hyper's `h2` machinery costs
//! more than twice HTTP/1's instructions per request): how frames are read and written (`frame`) and the header
//! compression codec (`hpack`). No elbe types here, as in `http1`. HTTP/2 is elbe's departure from ELB Classic,
//! whose front end spoke HTTP/1.x only (ELB-SPEC §1.1).

pub(crate) mod frame;
pub(crate) mod hpack;
