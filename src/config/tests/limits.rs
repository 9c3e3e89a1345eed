//! `[limits]`: counts greater than 0, a head limit a browser fits in (and at most 16 MiB), a listen backlog
//! `listen(2)` takes, positive durations with units.

use super::{fails, ms, ok, MINIMAL};

#[test]
fn limits_rules() {
    let lim = |body: &str| format!("[limits]\n{body}\n{MINIMAL}");
    fails(
        &lim("max_request_header_bytes = 8191"),
        "limits.max_request_header_bytes",
        "at least 8192",
    );
    ok(&lim("max_request_header_bytes = 8192"));
    fails(
        &lim("max_request_header_bytes = 16777217"),
        "limits.max_request_header_bytes",
        "at most 16777216",
    );
    ok(&lim("max_request_header_bytes = 16777216"));
    for name in [
        "max_headers",
        "max_uri_bytes",
        "max_connections",
        "backend_idle_connections",
    ] {
        fails(
            &lim(&format!("{name} = 0")),
            &format!("limits.{name}"),
            "greater than 0",
        );
    }
    for name in [
        "request_header_timeout",
        "tls_handshake_timeout",
        "shutdown_grace",
        "backend_connect_timeout",
    ] {
        fails(
            &lim(&format!("{name} = \"0ms\"")),
            &format!("limits.{name}"),
            "greater than zero",
        );
        fails(
            &lim(&format!("{name} = 5")),
            &format!("limits.{name}"),
            "needs a unit",
        );
    }
    for bad in ["0", "65536"] {
        fails(
            &lim(&format!("listen_backlog = {bad}")),
            "limits.listen_backlog",
            "between 1 and 65535",
        );
    }
    fails(
        &lim("listen_backlog = -1"),
        "limits.listen_backlog",
        "whole number",
    );
    assert_eq!(ok(&lim("listen_backlog = 511")).limits.listen_backlog, 511);
    let config = ok(&lim(
        "backend_connect_timeout = \"1.5s\"\nbackend_idle_connections = 4",
    ));
    assert_eq!(
        (
            config.limits.backend_connect_timeout,
            config.limits.backend_idle_connections
        ),
        (ms(1500), 4)
    );
}
