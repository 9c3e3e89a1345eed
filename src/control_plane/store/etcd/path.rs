//! etcd keys back to record keys: the inverse of `Key`'s `Display` (`store/record`), so a watched delete, which
//! carries only the etcd key, names the record it forgot.
//!
//! Rule: under the prefix, a key whose first segment is a record folder (`registrations`, `listeners`, ...) must
//! read back as exactly one [`Key`] whose path is the same text ([`Parsed::Record`]); anything else there is
//! damaged ([`Parsed::Damaged`]). A key in any other folder is not a record ([`Parsed::Other`]): cluster mode keeps
//! its members and their health under the same prefix, and a store reading records skips them.
//!
//! Trade-off: the folder names are written here a second time (record.rs owns `Display`); the round-trip test of
//! every kind keeps the two in step, and a new kind fails it until it is added here.

use super::super::Key;

/// What a key under the prefix is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    /// A record's key.
    Record(Key),
    /// In a record folder, but not a key elbe writes.
    Damaged,
    /// Not in a record folder: someone else's key (cluster membership), skipped.
    Other,
}

/// Reads `path` (the part after `{prefix}/`).
pub(super) fn parse(path: &str) -> Parsed {
    let mut segments = path.split('/');
    let folder = segments.next().unwrap_or_default();
    let rest: Vec<&str> = segments.collect();
    let key = match (folder, rest.as_slice()) {
        ("registrations", [lb, id]) => name(lb).zip(name(id)).map(|(lb, id)| Key::Registration {
            load_balancer: lb,
            instance_id: id,
        }),
        ("load_balancers", [lb]) => name(lb).map(|name| Key::LoadBalancer { name }),
        ("zones", [lb]) => name(lb).map(|load_balancer| Key::Zones { load_balancer }),
        ("listeners", [lb, port]) => {
            with_port(lb, port).map(|(load_balancer, port)| Key::Listener {
                load_balancer,
                port,
            })
        }
        ("listener_policies", [lb, port]) => {
            with_port(lb, port).map(|(load_balancer, port)| Key::ListenerPolicies {
                load_balancer,
                port,
            })
        }
        ("health_checks", [lb]) => name(lb).map(|load_balancer| Key::HealthCheck { load_balancer }),
        ("attributes", [lb]) => name(lb).map(|load_balancer| Key::Attributes { load_balancer }),
        ("policies", [lb, policy]) => {
            name(lb)
                .zip(name(policy))
                .map(|(load_balancer, name)| Key::Policy {
                    load_balancer,
                    name,
                })
        }
        ("backend_policies", [lb, port]) => {
            with_port(lb, port).map(|(load_balancer, port)| Key::BackendPolicies {
                load_balancer,
                port,
            })
        }
        ("tags", [lb]) => name(lb).map(|load_balancer| Key::Tags { load_balancer }),
        (folder, _) if !FOLDERS.contains(&folder) => return Parsed::Other,
        _ => None,
    };
    match key {
        // Only the one spelling `Display` writes: `%2f` or a needless `%41` is not elbe's.
        Some(key) if key.to_string() == path => Parsed::Record(key),
        _ => Parsed::Damaged,
    }
}

/// The folders records are kept in.
const FOLDERS: [&str; 10] = [
    "registrations",
    "load_balancers",
    "zones",
    "listeners",
    "listener_policies",
    "health_checks",
    "attributes",
    "policies",
    "backend_policies",
    "tags",
];

fn with_port(lb: &str, port: &str) -> Option<(String, u16)> {
    name(lb).zip(port.parse().ok())
}

/// One segment, `%2F` and `%25` unescaped.
fn name(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2F" => '/',
            "25" => '%',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_key_reads_back_from_its_path_and_others_are_told_apart() {
        let lb = || "a/b%c".to_owned();
        let keys = [
            Key::Registration {
                load_balancer: lb(),
                instance_id: "i/%1".into(),
            },
            Key::LoadBalancer { name: lb() },
            Key::Zones {
                load_balancer: lb(),
            },
            Key::Listener {
                load_balancer: lb(),
                port: 80,
            },
            Key::ListenerPolicies {
                load_balancer: lb(),
                port: 443,
            },
            Key::HealthCheck {
                load_balancer: lb(),
            },
            Key::Attributes {
                load_balancer: lb(),
            },
            Key::Policy {
                load_balancer: lb(),
                name: "p/1".into(),
            },
            Key::BackendPolicies {
                load_balancer: lb(),
                port: 8080,
            },
            Key::Tags {
                load_balancer: lb(),
            },
        ];
        for key in keys {
            let path = key.to_string();
            assert!(FOLDERS.iter().any(|f| path.starts_with(&format!("{f}/"))));
            assert_eq!(parse(&path), Parsed::Record(key), "{path}");
        }
        assert_eq!(parse("members/lb-1a"), Parsed::Other);
        for damaged in [
            "registrations/web",
            "registrations/web/i-1/x",
            "listeners/web/http",
            "listeners/web/70000",
            "tags/a%2fb",
            "tags/a%41",
            "tags/a%2",
        ] {
            assert_eq!(parse(damaged), Parsed::Damaged, "{damaged}");
        }
    }
}
