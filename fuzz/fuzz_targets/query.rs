//! The ELB API's Query decoder (`control_plane::api`: `query` and `action`): a form-encoded body, as `POST /`
//! on the admin listener receives it, decoded into an action's typed request or refused with ELB's code.
//!
//! Input layout: the bytes are the body.
//!
//! Invariants:
//! - every refusal is one of the protocol's or ELB's codes a decoder gives, with HTTP status 400, or 409 for
//!   `InvalidConfigurationRequest` (nothing the decoder reads is the server's fault);
//! - the verdict does not depend on the order of the pairs: the same pairs reversed decode to the same call, or
//!   are refused with the same code;
//! - a list read back (`L.member.N…`) and written again as `L.member.N…` reads back the same, as does a map
//!   (`M.entry.N.key/value`); no list has more than 1,000 members.
#![no_main]

use elbe::fuzz_support::{api_lists, api_query};
use libfuzzer_sys::fuzz_target;

const CODES: &[&str] = &[
    "MissingAction",
    "MissingParameter",
    "InvalidAction",
    "ValidationError",
    // ELB's own, refused by an action's decoder before anything runs.
    "UnsupportedProtocol",
    "InvalidScheme",
    "InvalidSecurityGroup",
    "DuplicateTagKeys",
    "TooManyTags",
    "PolicyTypeNotFound",
    "InvalidConfigurationRequest",
];

/// The body's pairs written again in reverse order.
fn reversed(data: &[u8]) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().rev() {
        out.append_pair(key, value);
    }
    out.finish()
}

/// The body's pairs written again as they are (form_urlencoded's lossy UTF-8 applied once).
fn rewritten(data: &[u8]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(data) {
        out.append_pair(&key, &value);
    }
    out.finish()
}

fuzz_target!(|data: &[u8]| {
    let verdict = api_query(data);
    if let Err((code, status)) = verdict {
        assert!(CODES.contains(&code), "unexpected code {code}");
        let expected = if code == "InvalidConfigurationRequest" { 409 } else { 400 };
        assert_eq!(status, expected, "{code}");
    }
    // Reversing only reorders when no key is given twice (then both are refused, for the same reason).
    let canonical = api_query(rewritten(data).as_bytes());
    let backwards = api_query(reversed(data).as_bytes());
    match (&canonical, &backwards) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the order of the pairs changed the call"),
        (Err((a, _)), Err((b, _))) => assert_eq!(a, b, "the order of the pairs changed the refusal"),
        _ => panic!("the order of the pairs changed the verdict: {canonical:?} / {backwards:?}"),
    }

    if let Ok((members, entries)) = api_lists(data, "L", "M") {
        assert!(members.len() <= 1000);
        let mut again = form_urlencoded::Serializer::new(String::new());
        for (n, member) in members.iter().enumerate() {
            for (field, value) in member {
                let key = if field.is_empty() {
                    format!("L.member.{}", n + 1)
                } else {
                    format!("L.member.{}.{field}", n + 1)
                };
                again.append_pair(&key, value);
            }
        }
        for (n, (key, value)) in entries.iter().enumerate() {
            again.append_pair(&format!("M.entry.{}.key", n + 1), key);
            again.append_pair(&format!("M.entry.{}.value", n + 1), value);
        }
        let again = again.finish();
        let back = api_lists(again.as_bytes(), "L", "M");
        // A map entry whose key is empty is refused (the key is required): it cannot have come out of a read.
        assert_eq!(back, Ok((members, entries)), "a list or map written again read back differently: {again}");
    }
});
