//! elbe's HTTP/2 server connection fed whatever a client may send after the preface (`fuzz_support::h2_connection`
//! says how it is driven, and the stand-in stack it serves).
//!
//! Invariants (checked inside `h2_connection`, which panics when one breaks):
//! - no panic; the connection ends once the client has closed its side (no hang, no busy loop);
//! - it ends cleanly or with the GOAWAY it wrote last, never with a socket error;
//! - elbe's output is whole, valid frames, SETTINGS first, on streams the client opened;
//! - its DATA stays within the windows the client announced (per stream and on the connection).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    elbe::fuzz_support::h2_connection(data);
});
