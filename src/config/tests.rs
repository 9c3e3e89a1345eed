//! Tests of the whole file, through [`parse`] and [`load`] as their callers use them, split by concern: reading
//! and its errors (`parse`), defaults, load balancers and zones, listeners, health checks, limits and sockets.
//!
//! Rule: each test gives a whole file (usually [`MINIMAL`] with one change) and asserts the key path and the
//! words of the refusal, since those are the contract `elbe check` prints. The value parsers (`parse_duration`,
//! `HealthTarget`, `InstanceAddress`, `Protocol`, the name checks) are unit-tested beside their code.
//!
//! Trade-off: going through `parse` tests the checks in the order they run, so a test's file must be valid up to
//! the mistake it makes; the fixtures below keep that cheap.

mod binds;
mod defaults;
mod health_checks;
mod limits;
mod listeners;
mod load_balancers;
mod parse;
mod traffic;

use std::path::Path;
use std::time::Duration;

use crate::config::{parse, Config};

/// The smallest valid file: one load balancer, one zone, one HTTP listener.
const MINIMAL: &str = r#"
[[load_balancer]]
name = "web"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000
"#;

/// The file name every error must carry.
fn file() -> &'static Path {
    Path::new("examples/web.toml")
}

/// Parses a file that must be valid.
fn ok(text: &str) -> Config {
    match parse(text, file()) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

/// Asserts that `text` is refused at `key` with a reason containing `needle`.
fn fails(text: &str, key: &str, needle: &str) {
    match parse(text, file()) {
        Ok(_) => panic!("expected an error at {key}"),
        Err(e) => {
            assert_eq!(e.file, file());
            assert_eq!(e.key, key, "wrong key in: {e}");
            assert!(
                e.reason.contains(needle),
                "reason {:?} lacks {needle:?}",
                e.reason
            );
        }
    }
}

/// MINIMAL with `extra` appended to the load balancer's top-level table (before its sub-tables).
fn with_lb(extra: &str) -> String {
    MINIMAL.replacen("name = \"web\"\n", &format!("name = \"web\"\n{extra}\n"), 1)
}

/// A `[[load_balancer.listener]]` table, with `extra` keys after the four required ones.
fn listener(
    protocol: &str,
    port: u16,
    instance_protocol: &str,
    instance_port: u16,
    extra: &str,
) -> String {
    format!(
        "[[load_balancer.listener]]\nprotocol = \"{protocol}\"\nload_balancer_port = {port}\n\
         instance_protocol = \"{instance_protocol}\"\ninstance_port = {instance_port}\n{extra}\n"
    )
}

/// One certificate, for the HTTPS and SSL listeners of [`listener`]: the development certificate, relative to
/// [`file`]'s folder (`examples/`), since validation checks that the files are there.
const CERTS: &str =
    r#"certificates = [{ cert = "../certs/localhost.crt", key = "../certs/localhost.key" }]"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
