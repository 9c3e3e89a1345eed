//! Readiness for service managers: systemd's `sd_notify` protocol, spoken without libsystemd.
//!
//! Rule: a `Type=notify` unit (packaging/systemd/elbe.service) is "started" only when elbe says `READY=1` on the
//! datagram socket named by `$NOTIFY_SOCKET`. elbe says it once every listener is bound (`server::start` has
//! returned), `RELOADING=1` then `READY=1` around a SIGHUP reload, and `STOPPING=1` when SIGTERM starts the drain,
//! so `systemctl start` waits for real readiness and `systemctl reload` for the reload (sd_notify(3)). Without
//! `$NOTIFY_SOCKET` (a terminal, a container, a test) every call is a no-op.
//!
//! Trade-off: std's `UnixDatagram`, no crate: the protocol is one datagram of `KEY=VALUE` lines, and a path or
//! an abstract name (`@name`, Linux) are the only two addresses. Not supported: the watchdog (`WATCHDOG=1`)
//! and `MONOTONIC_USEC` with `RELOADING=1` (which only `Type=notify-reload`, systemd 253+, requires; reading
//! CLOCK_MONOTONIC needs unsafe code or a crate).

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No datagram socket could be opened.
    #[error("cannot open a datagram socket for {NOTIFY_SOCKET}: {0}")]
    Socket(#[source] std::io::Error),
    /// `NOTIFY_SOCKET` is neither a path nor an abstract (`@`) socket name.
    #[error("{NOTIFY_SOCKET}={socket:?} is not an address elbe can send to: {source}")]
    Address {
        /// The variable's value.
        socket: OsString,
        /// Why it is not usable.
        #[source]
        source: std::io::Error,
    },
    /// The socket refused the datagram (systemd not listening).
    #[error("cannot notify {socket:?}: {source}")]
    Send {
        /// The variable's value.
        socket: OsString,
        /// The send error.
        #[source]
        source: std::io::Error,
    },
}

/// Every listener is bound and serving.
pub fn ready(status: &str) {
    report(&format!("READY=1\nSTATUS={status}"));
}

/// A SIGHUP reload has begun; [`ready`] ends it.
pub fn reloading() {
    report("RELOADING=1\nSTATUS=reloading the configuration");
}

/// The drain has begun: no new connections, in-flight requests finishing.
pub fn stopping() {
    report("STOPPING=1\nSTATUS=draining connections");
}

/// Sends `state` and logs (rather than returns) a failure: a service manager that cannot be told is no reason to
/// stop serving; systemd then times the start out and says why.
fn report(state: &str) {
    if let Err(error) = notify(state) {
        tracing::warn!(%error, "sd_notify");
    }
}

/// Sends one notification to `$NOTIFY_SOCKET`. `Ok(false)` when the variable is unset (no service manager
/// listens).
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => send(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the socket at `socket`: a path, or `@name` for Linux's abstract namespace.
pub fn send(socket: &std::ffi::OsStr, state: &str) -> Result<(), NotifyError> {
    let sender = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
    let sent = match abstract_name(socket) {
        Some(name) => send_abstract(&sender, socket, name, state.as_bytes())?,
        None => sender.send_to(state.as_bytes(), socket),
    };
    sent.map(|_| ()).map_err(|source| NotifyError::Send {
        socket: socket.to_owned(),
        source,
    })
}

/// The name after `@`, when `socket` names an abstract socket.
fn abstract_name(socket: &std::ffi::OsStr) -> Option<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    socket.as_bytes().strip_prefix(b"@")
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(
    sender: &UnixDatagram,
    socket: &std::ffi::OsStr,
    name: &[u8],
    bytes: &[u8],
) -> Result<std::io::Result<usize>, NotifyError> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(|source| {
        NotifyError::Address {
            socket: socket.to_owned(),
            source,
        }
    })?;
    Ok(sender.send_to_addr(bytes, &address))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(
    _: &UnixDatagram,
    socket: &std::ffi::OsStr,
    _: &[u8],
    _: &[u8],
) -> Result<std::io::Result<usize>, NotifyError> {
    Err(NotifyError::Address {
        socket: socket.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "abstract sockets exist only on Linux",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram socket bound in a fresh temporary folder, with a read timeout so a missing datagram fails the test.
    fn listener(name: &str) -> (std::path::PathBuf, UnixDatagram) {
        let dir = std::env::temp_dir().join(format!("elbe-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (path, socket)
    }

    /// One datagram, as text.
    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_path_socket_gets_the_state_as_one_datagram() {
        let (path, socket) = listener("path");
        send(path.as_os_str(), "READY=1\nSTATUS=serving").unwrap();
        assert_eq!(receive(&socket), "READY=1\nSTATUS=serving");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("elbe-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error_that_names_it() {
        let error = send(
            std::ffi::OsStr::new("/nonexistent/elbe/notify.sock"),
            "READY=1",
        )
        .unwrap_err();
        assert!(matches!(error, NotifyError::Send { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/elbe/notify.sock"));
        assert!(std::error::Error::source(&error).is_some());
    }
}
