//! The names and numbers the file is made of: load balancer names, DNS labels, zone names and instance ids, host
//! names and ports.
//!
//! Rule: load balancer names follow ELB's API (ELB-SPEC §4: 1–32 of `[A-Za-z0-9-]`, no `-` at either end), since
//! they become DNS names; regions and the DNS domain are DNS labels; zone names and instance ids only need to
//! survive logs and metric labels.
//!
//! Trade-off: each check returns its reason as text and the caller attaches the key path, so the admin API can
//! reuse `check_label` with its own field names.

use crate::config::defaults;

/// ELB-SPEC §4: 1–32 characters of `[A-Za-z0-9-]`, no leading or trailing `-`.
pub fn check_load_balancer_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > defaults::MAX_LOAD_BALANCER_NAME_LEN {
        return Err(format!(
            "load balancer name {name:?} must have 1 to {} characters",
            defaults::MAX_LOAD_BALANCER_NAME_LEN
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "load balancer name {name:?} may only contain letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "load balancer name {name:?} must not begin or end with '-'"
        ));
    }
    Ok(())
}

/// A zone name or instance id: not empty, no spaces or control characters, because they appear in logs, metric
/// labels and the API (also used by the admin API).
pub fn check_label(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{text:?} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

/// RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// One DNS label: 1–63 letters, digits or `-`, not at either end.
pub(super) fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A DNS name of at most 253 characters: dot-separated [`is_dns_label`]s.
pub(super) fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A host name an instance may be given by. `_` is allowed (common in service discovery names); an all-digit
/// last label is not, so that a mistyped IP such as `127.0.0.256` is not taken for a name.
pub(super) fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    host.len() <= 253
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// A port given as text: decimal digits only (no sign, no spaces), 1–65535.
pub(super) fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(port)
        }
        _ => Err(format!(
            "port must be a number from 1 to 65535, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_names() {
        for name in ["web", "Web-1", "a", &"a".repeat(32)] {
            assert_eq!(check_load_balancer_name(name), Ok(()), "{name:?}");
        }
        for (name, needle) in [
            ("", "1 to 32"),
            (&"a".repeat(33), "1 to 32"),
            ("web_1", "letters, digits"),
            ("web.1", "letters, digits"),
            ("-web", "begin or end"),
            ("web-", "begin or end"),
        ] {
            match check_load_balancer_name(name) {
                Ok(()) => panic!("{name:?} was accepted"),
                Err(why) => assert!(why.contains(needle), "{name:?}: {why:?} lacks {needle:?}"),
            }
        }
    }

    #[test]
    fn labels() {
        assert_eq!(check_label("zone-a"), Ok(()));
        assert_eq!(check_label("i-0123/é"), Ok(()));
        assert_eq!(check_label(""), Err("must not be empty".to_owned()));
        for text in ["a b", "a\tb", "a\u{7}"] {
            assert!(check_label(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn dns_labels_and_names() {
        assert!(is_dns_label("local-1"));
        assert!(is_dns_label(&"a".repeat(63)));
        for label in ["", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(label), "{label:?}");
        }
        assert!(is_dns_name("elb.localhost"));
        assert!(!is_dns_name("elb..localhost"));
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(!is_dns_name(&long));
    }

    #[test]
    fn host_names() {
        for host in ["localhost", "backend.local", "web_1.svc", "a1.b2"] {
            assert!(is_host_name(host), "{host:?}");
        }
        for host in ["", "127.0.0.256", "a..b", "-bad.host", "a b", "host.123"] {
            assert!(!is_host_name(host), "{host:?}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("1"), Ok(1));
        assert_eq!(parse_port("65535"), Ok(65535));
        for text in ["", "0", "65536", "+80", " 80", "http"] {
            assert_eq!(
                parse_port(text),
                Err(format!(
                    "port must be a number from 1 to 65535, got {text:?}"
                ))
            );
        }
    }
}
