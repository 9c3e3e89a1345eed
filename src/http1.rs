//! HTTP/1.1 on the wire, for both roles (elbe's server to clients, elbe's client to instances): where a head's
//! parts lie in its bytes, how a body is framed, and how sockets are read and written. No elbe types here.

pub(crate) mod buffers;
pub(crate) mod fields;
pub(crate) mod framing;
pub(crate) mod head;
pub(crate) mod io;
