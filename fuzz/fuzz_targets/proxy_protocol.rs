//! The PROXY protocol header parser (`data_plane::tcp::proxy_protocol::parse`): what a trusted upstream sends in
//! front of a connection on a listener with `accept_proxy_protocol = true`, v1 text or v2 binary.
//!
//! Invariants:
//! - a whole header is never longer than the bytes given, nor than the specification's 107 bytes (v1) or elbe's
//!   16 + 4096 (v2);
//! - the verdict does not depend on what follows a header: the header alone gives the same result;
//! - every prefix of a whole header is incomplete (a header is never recognised early, or refused early);
//! - a refusal stays a refusal when more bytes follow;
//! - a v1 header's source, written back as elbe's own line (TCP4/TCP6), parses to the same address.
#![no_main]

use elbe::fuzz_support::{parse_proxy_header, proxy_v1_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = parse_proxy_header(data);
    match &verdict {
        Ok(Some((length, source))) => {
            let length = *length;
            assert!(length <= data.len(), "a header of {length} bytes in {} bytes", data.len());
            let limit = if data[0] == b'P' { 107 } else { 16 + 4096 };
            assert!(length <= limit, "a header of {length} bytes");
            assert_eq!(parse_proxy_header(&data[..length]), verdict, "the bytes after the header changed it");
            for end in 0..length {
                assert_eq!(parse_proxy_header(&data[..end]), Ok(None), "a {end}-byte prefix was not incomplete");
            }
            if let Some(source) = source {
                let node = "127.0.0.1:80".parse().unwrap();
                let line = proxy_v1_line(*source, node);
                let back = parse_proxy_header(line.as_bytes());
                let written = back.ok().flatten().and_then(|(_, s)| s).expect("elbe's own line parses");
                assert_eq!(written.port(), source.port());
                assert_eq!(written.ip().to_canonical(), source.ip().to_canonical());
            }
        }
        Ok(None) => {}
        Err(_) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\nmore");
            assert!(parse_proxy_header(&longer).is_err(), "more bytes turned a refusal into {verdict:?}");
        }
    }
});
