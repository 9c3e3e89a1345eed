//! The TLS client of SSL and HTTPS probes: the process's one unverified client, the one instances without
//! `backend_ca` are reached with too ([`crate::data_plane::back_end::tls`]).
//!
//! The rule is ELB-SPEC §2.1: ELB does not validate an instance's certificate when checking it, and sends no SNI.
//! Health checks keep this client even where traffic verifies the instance (`backend_ca`): a check says whether
//! the instance answers TLS, as ELB's did, and one client for every probe lets sessions resume across checks.

use std::sync::Arc;

use rustls::ClientConfig;

/// The one TLS client configuration of every SSL/HTTPS probe in the process, or why it cannot be built.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    crate::data_plane::back_end::tls::unverified()
}
