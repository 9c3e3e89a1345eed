//! Socket collisions: no two nodes, nor the admin listener and DNS responder, may bind the same address and port.

use super::{fails, ok, MINIMAL};

#[test]
fn binds_must_not_collide() {
    let other = MINIMAL.replace("\"web\"", "\"api\"");
    fails(
        &format!("{MINIMAL}{other}"),
        "load_balancer[1].availability_zone[0].node",
        "already binds at 127.0.0.11:8080",
    );
    // Different ports, or port 0, are fine.
    ok(&format!("{MINIMAL}{}", other.replace("8080", "8081")));
    ok(&format!(
        "{}{}",
        MINIMAL.replace("8080", "0"),
        other.replace("8080", "0")
    ));
    // A wildcard node overlaps every address of its family; `::` overlaps IPv4 too.
    fails(
        &format!("{MINIMAL}{}", other.replace("127.0.0.11", "0.0.0.0")),
        "load_balancer[1].availability_zone[0].node",
        "0.0.0.0:8080",
    );
    fails(
        &format!("{MINIMAL}{}", other.replace("127.0.0.11", "::")),
        "load_balancer[1].availability_zone[0].node",
        "already binds",
    );
    ok(&format!("{MINIMAL}{}", other.replace("127.0.0.11", "::1")));
    // The admin and DNS listeners take part.
    fails(
        &format!("[admin]\nlisten = \"127.0.0.11:8080\"\n{MINIMAL}"),
        "load_balancer[0].availability_zone[0].node",
        "the admin listener",
    );
    fails(
        &format!("[dns]\nlisten = \"127.0.0.1:9900\"\n{MINIMAL}"),
        "dns.listen",
        "the admin listener",
    );
}
