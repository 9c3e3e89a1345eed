//! Listener rules (ELB-SPEC §1): protocol pairing, ports, certificates and SSL policies.

use super::{fails, listener, ok, CERTS, MINIMAL};
use crate::config::Protocol;

#[test]
fn listener_rules() {
    let l0 = "load_balancer[0].listener[1]";
    fails(
        &format!("{MINIMAL}{}", listener("HTTP", 81, "TCP", 8000, "")),
        &format!("{l0}.instance_protocol"),
        "an HTTP listener needs an instance_protocol of HTTP or HTTPS, not TCP",
    );
    fails(
        &format!("{MINIMAL}{}", listener("SSL", 81, "HTTPS", 9000, CERTS)),
        &format!("{l0}.instance_protocol"),
        "TCP or SSL",
    );
    fails(
        &format!("{MINIMAL}{}", listener("HTTP", 8080, "HTTP", 8001, "")),
        &format!("{l0}.load_balancer_port"),
        "already used by listener[0]",
    );
    fails(
        &format!("{MINIMAL}{}", listener("HTTP", 81, "HTTPS", 8000, "")),
        &format!("{l0}.instance_protocol"),
        "secure",
    );
    fails(
        &format!("{MINIMAL}{}", listener("HTTP", 81, "HTTP", 0, "")),
        &format!("{l0}.instance_port"),
        "1-65535",
    );
    fails(
        &format!("{MINIMAL}{}", listener("HTTPS", 443, "HTTP", 8000, "")),
        &format!("{l0}.certificates"),
        "at least one certificate",
    );
    fails(
        &format!("{MINIMAL}{}", listener("TCP", 81, "TCP", 9000, CERTS)),
        &format!("{l0}.certificates"),
        "only HTTPS and SSL",
    );
    fails(
        &format!(
            "{MINIMAL}{}",
            listener("TCP", 81, "TCP", 9000, "ssl_policy = \"p\"")
        ),
        &format!("{l0}.ssl_policy"),
        "only HTTPS and SSL",
    );
    fails(
        &format!(
            "{MINIMAL}{}",
            listener(
                "HTTPS",
                443,
                "HTTP",
                8000,
                r#"certificates = [{ cert = "", key = "k" }]"#
            )
        ),
        &format!("{l0}.certificates[0].cert"),
        "empty",
    );
    // Missing or unreadable files are blamed on their key, before the TLS layer ever reads them.
    fails(
        &format!(
            "{MINIMAL}{}",
            listener(
                "HTTPS",
                443,
                "HTTP",
                8000,
                r#"certificates = [{ cert = "../certs/localhost.crt", key = "../certs/localhost.key" }, { cert = "missing.crt", key = "../certs/example.key" }]"#
            )
        ),
        &format!("{l0}.certificates[1].cert"),
        "cannot read the certificate file examples/missing.crt: no such file",
    );
    fails(
        &format!(
            "{MINIMAL}{}",
            listener(
                "SSL",
                443,
                "TCP",
                8000,
                r#"certificates = [{ cert = "../certs/localhost.crt", key = "../certs" }]"#
            )
        ),
        &format!("{l0}.certificates[0].key"),
        "cannot read the private key file examples/../certs: it is a directory, not a file",
    );
    fails(
        &format!("{MINIMAL}{}", listener("http2", 81, "HTTP", 8000, "")),
        &format!("{l0}.protocol"),
        "unknown protocol",
    );
    fails(
        &MINIMAL
            .replace("[[load_balancer.listener]]", "[load_balancer.x]")
            .replace("protocol", "x"),
        "load_balancer[0].x",
        "unknown field",
    );
    // Allowed: port 0 repeats, lower-case protocols, the same instance port with the same security, SSL -> SSL.
    let config = ok(&format!(
        "{}{}{}{}",
        MINIMAL.replace("load_balancer_port = 8080", "load_balancer_port = 0"),
        listener("tcp", 0, "tcp", 8000, ""),
        listener("SSL", 8443, "SSL", 9443, CERTS),
        listener("HTTPS", 443, "HTTPS", 9443, CERTS),
    ));
    let listeners = &config.load_balancers[0].listeners;
    assert_eq!(
        (listeners[1].protocol, listeners[2].instance_protocol),
        (Protocol::Tcp, Protocol::Ssl)
    );
}

/// `freebind` is off unless asked, on per listener when asked, and a value that is not a boolean is blamed on the
/// listener's key: the floating-IP pair's standby binds the VIP only on the listeners that say so.
#[test]
fn freebind_is_off_by_default_and_per_listener() {
    let config = ok(&format!(
        "{MINIMAL}{}",
        listener("HTTP", 81, "HTTP", 8000, "freebind = true")
    ));
    let listeners = &config.load_balancers[0].listeners;
    assert!(!listeners[0].freebind, "off unless asked");
    assert!(listeners[1].freebind);
    fails(
        &format!(
            "{MINIMAL}{}",
            listener("HTTP", 81, "HTTP", 8000, "freebind = \"yes\"")
        ),
        "load_balancer[0].listener[1].freebind",
        "invalid type",
    );
    // A node address that is not on this machine is fine with freebind: it is never checked against the
    // machine's addresses (that is bind time's question, and freebind answers it).
    let floating = ok(&format!(
        "{}freebind = true\n",
        MINIMAL.replace("127.0.0.11", "198.18.0.100")
    ));
    assert!(floating.load_balancers[0].listeners[0].freebind);
}
