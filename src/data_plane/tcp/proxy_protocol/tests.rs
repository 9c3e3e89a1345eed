use super::*;

fn header(length: usize, source: &str) -> Result<Parsed, ProxyHeaderError> {
    Ok(Parsed::Header {
        length,
        source: Some(source.parse().unwrap()),
    })
}

/// A v2 header: `command` (0 LOCAL, 1 PROXY), `family` byte, the address block and TLV bytes after it.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.push(0x20 | command);
    bytes.push(family);
    bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn elbs_example_line_is_written_exactly() {
    // ELB-SPEC §7's example.
    let line = v1_line(
        "198.51.100.22:35646".parse().unwrap(),
        "203.0.113.7:80".parse().unwrap(),
    );
    assert_eq!(line, "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\n");
}

#[test]
fn ipv6_clients_get_tcp6_and_mapped_ipv4_clients_tcp4() {
    let line = v1_line("[::1]:5000".parse().unwrap(), "[::1]:443".parse().unwrap());
    assert_eq!(line, "PROXY TCP6 ::1 ::1 5000 443\r\n");
    let mapped = v1_line(
        "[::ffff:10.0.0.1]:5000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    assert_eq!(mapped, "PROXY TCP4 10.0.0.1 10.0.0.2 5000 80\r\n");
    let mixed = v1_line(
        "[2001:db8::1]:1".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    assert_eq!(mixed, "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 1 80\r\n");
}

#[test]
fn what_elbe_writes_it_reads_back() {
    for (client, node) in [
        ("198.51.100.22:35646", "203.0.113.7:80"),
        ("[2001:db8::7]:9", "[::1]:1"),
    ] {
        let line = v1_line(client.parse().unwrap(), node.parse().unwrap());
        assert_eq!(parse(line.as_bytes()), header(line.len(), client));
    }
}

#[test]
fn v1_lines_are_read_with_what_follows_left_alone() {
    let bytes = b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 443\r\nGET / HTTP/1.1\r\n";
    assert_eq!(parse(bytes), header(41, "192.0.2.1:5555"));
    assert_eq!(
        parse(b"PROXY UNKNOWN\r\n"),
        Ok(Parsed::Header {
            length: 15,
            source: None
        })
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
        Ok(Parsed::Header {
            length: 35,
            source: None
        })
    );
}

#[test]
fn a_partial_header_asks_for_more() {
    let line = b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 443\r\n";
    for end in 0..line.len() {
        assert_eq!(parse(&line[..end]), Ok(Parsed::Incomplete), "{end} bytes");
    }
    let header = v2(
        1,
        0x11,
        &[192, 0, 2, 1, 192, 0, 2, 2, 0x15, 0xb3, 0x01, 0xbb],
    );
    for end in 0..header.len() {
        assert_eq!(parse(&header[..end]), Ok(Parsed::Incomplete), "{end} bytes");
    }
}

#[test]
fn malformed_v1_lines_are_refused() {
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PROXY TCP5 1.1.1.1 2.2.2.2 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n",
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n",
        b"PROXY TCP4 ::1 2.2.2.2 1 2\r\n",
        b"PROXY TCP6 1.1.1.1 ::2 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n",
        b"PROXY TCP4 1.1.1.1 2.2.2.2 +1 2\r\n",
        b"PROXY TCP4 1.1.1.1  2.2.2.2 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n",
        b"proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n",
        b"PROXY UNKNOWN a\nb\r\n",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
    assert_eq!(
        parse(long.as_bytes()),
        Err(ProxyHeaderError::V1("no CRLF within 107 bytes"))
    );
}

#[test]
fn v2_carries_ipv4_and_ipv6_sources_and_skips_tlvs() {
    let mut body = vec![192, 0, 2, 1, 192, 0, 2, 2, 0x15, 0xb3, 0x01, 0xbb];
    body.extend_from_slice(&[0x04, 0x00, 0x01, 0x2a]); // a NOOP TLV
    let bytes = v2(1, 0x11, &body);
    assert_eq!(parse(&bytes), header(bytes.len(), "192.0.2.1:5555"));

    let mut body = vec![0u8; 36];
    body[15] = 1; // ::1
    body[31] = 2;
    body[32..34].copy_from_slice(&4000u16.to_be_bytes());
    let bytes = v2(1, 0x21, &body);
    assert_eq!(parse(&bytes), header(36 + 16, "[::1]:4000"));
}

#[test]
fn v2_local_and_unspecified_carry_no_client() {
    let local = v2(0, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    assert_eq!(
        parse(&local),
        Ok(Parsed::Header {
            length: 28,
            source: None
        })
    );
    let unspecified = v2(1, 0x00, &[]);
    assert_eq!(
        parse(&unspecified),
        Ok(Parsed::Header {
            length: 16,
            source: None
        })
    );
}

#[test]
fn malformed_v2_headers_are_refused() {
    let mut version_1 = v2(1, 0x11, &[0; 12]);
    version_1[12] = 0x11;
    let mut command_2 = v2(1, 0x11, &[0; 12]);
    command_2[12] = 0x22;
    for bad in [
        version_1,
        command_2,
        v2(1, 0x11, &[0; 11]),
        v2(1, 0x21, &[0; 35]),
        v2(1, 0x41, &[0; 12]),
        v2(1, 0x11, &vec![0; MAX_V2_HEADER]),
        b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00".to_vec(),
    ] {
        assert!(parse(&bad).is_err(), "{bad:?}");
    }
}
