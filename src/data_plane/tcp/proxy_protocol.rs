//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a Layer 4 balancer puts in front of
//! a connection to say whose it is.
//!
//! Two uses, two rules. Towards instances elbe writes ELB's line, version 1 only (ELB-SPEC §7):
//! `PROXY TCP4 <client-ip> <node-ip> <client-port> <listener-port>\r\n`, `TCP6` when the client is IPv6, single
//! spaces. From clients, on a listener with `accept_proxy_protocol = true` (elbe's extension, for running behind
//! another Layer 4 balancer; TCP, SSL, HTTP and HTTPS listeners alike), [`parse`] reads either version: the source
//! address it carries becomes the client's. `read` ([`read_header`]) takes it off the socket.
//!
//! The parser is pure (bytes in, verdict out), so it is fuzzed as it runs (`fuzz/fuzz_targets/proxy_protocol.rs`).
//! It is strict where the specification is: a v1 line is at most 107 bytes with its CRLF, addresses must be of the
//! family the line names, ports are 1-5 decimal digits below 65536; a v2 header's version nibble is 2, its command
//! LOCAL or PROXY, and its length covers the addresses of its family. `UNKNOWN` (v1), `LOCAL` (v2, a health check
//! from the upstream itself) and address families other than TCP over IPv4/IPv6 carry no client address: the
//! connection's own peer is used, as the specification says a receiver should.
//!
//! Trade-off: a v2 header may carry TLVs (up to 64 KiB in principle); elbe skips them and refuses a header longer
//! than [`MAX_V2_HEADER`] bytes, which is far more than any balancer sends, so a client cannot make a connection
//! hold 64 KiB before it is even known to be one.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

mod read;

pub(crate) use read::read_header;

/// A v1 line's longest form, CRLF included (the specification's 107 bytes).
pub(crate) const MAX_V1_LINE: usize = 107;

/// The longest v2 header accepted, its 16-byte preamble included.
pub(crate) const MAX_V2_HEADER: usize = 16 + 4096;

/// Version 2's 12-byte signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Version 1's opening.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A header may still be arriving: read more.
    Incomplete,
    /// A whole header of `length` bytes; `source` is the client it names, if it names one.
    Header {
        length: usize,
        source: Option<SocketAddr>,
    },
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 line: {0}")]
    V1(&'static str),
    #[error("malformed PROXY protocol v2 header: {0}")]
    V2(&'static str),
}

/// Reads a v1 or v2 header from the start of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    match bytes.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(bytes),
        Some(b'\r') => parse_v2(bytes),
        Some(_) => Err(ProxyHeaderError::Missing),
    }
}

/// `PROXY <TCP4|TCP6> <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let opening = bytes.len().min(V1_PREFIX.len());
    if bytes[..opening] != V1_PREFIX[..opening] {
        return Err(ProxyHeaderError::Missing);
    }
    let window = &bytes[..bytes.len().min(MAX_V1_LINE)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() >= MAX_V1_LINE {
            return Err(ProxyHeaderError::V1("no CRLF within 107 bytes"));
        }
        if window.contains(&b'\n') {
            return Err(ProxyHeaderError::V1("a bare LF before the CRLF"));
        }
        return Ok(Parsed::Incomplete);
    };
    if bytes[..end].contains(&b'\n') {
        return Err(ProxyHeaderError::V1("a bare LF before the CRLF"));
    }
    let length = end + 2;
    let line = std::str::from_utf8(&bytes[V1_PREFIX.len()..end])
        .map_err(|_| ProxyHeaderError::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    let source = match fields.next() {
        Some("UNKNOWN") => None,
        Some("TCP4") => Some(v1_addresses(&mut fields, false)?),
        Some("TCP6") => Some(v1_addresses(&mut fields, true)?),
        _ => {
            return Err(ProxyHeaderError::V1(
                "the protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    Ok(Parsed::Header { length, source })
}

/// The four fields after `TCP4`/`TCP6`; returns the source.
fn v1_addresses<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    v6: bool,
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut next = || fields.next().ok_or(ProxyHeaderError::V1("too few fields"));
    let (source, destination) = (next()?, next()?);
    let (source_port, destination_port) = (next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyHeaderError::V1("too many fields"));
    }
    let ip = |text: &str| -> Result<IpAddr, ProxyHeaderError> {
        let parsed = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        parsed.map_err(|_| ProxyHeaderError::V1("an address is not of the family the line names"))
    };
    let source_ip = ip(source)?;
    ip(destination)?;
    let source_port = v1_port(source_port)?;
    v1_port(destination_port)?;
    Ok(SocketAddr::new(source_ip, source_port))
}

fn v1_port(text: &str) -> Result<u16, ProxyHeaderError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyHeaderError::V1("a port is not 1-5 decimal digits"));
    }
    text.parse()
        .map_err(|_| ProxyHeaderError::V1("a port is above 65535"))
}

/// The binary header: signature, version and command, family and transport, length, addresses, TLVs.
fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let signed = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..signed] != V2_SIGNATURE[..signed] {
        return Err(ProxyHeaderError::Missing);
    }
    let Some(preamble) = bytes.get(..16) else {
        return Ok(Parsed::Incomplete);
    };
    let (version_command, family) = (preamble[12], preamble[13]);
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::V2("the version is not 2"));
    }
    let proxied = match version_command & 0x0f {
        0 => false,
        1 => true,
        _ => {
            return Err(ProxyHeaderError::V2(
                "the command is neither LOCAL nor PROXY",
            ))
        }
    };
    let length = 16 + usize::from(u16::from_be_bytes([preamble[14], preamble[15]]));
    if length > MAX_V2_HEADER {
        return Err(ProxyHeaderError::V2(
            "longer than elbe accepts (4 KiB of addresses and TLVs)",
        ));
    }
    let Some(header) = bytes.get(..length) else {
        return Ok(Parsed::Incomplete);
    };
    let body = &header[16..];
    let stream = family & 0x0f == 1;
    let source = match family >> 4 {
        1 => {
            let a = body
                .get(..12)
                .ok_or(ProxyHeaderError::V2("too short for IPv4 addresses"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(ProxyHeaderError::V2("too short for IPv6 addresses"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        0 | 3 => None,
        _ => return Err(ProxyHeaderError::V2("unknown address family")),
    };
    let source = source.filter(|_| proxied && stream);
    Ok(Parsed::Header { length, source })
}

/// ELB's v1 line for a connection from `client` to the listener at `node` (ELB-SPEC §7). An IPv4-mapped IPv6
/// client (a dual-stack socket) is written as IPv4; TCP6 when either side is IPv6, so both addresses are of the
/// line's family.
pub(crate) fn v1_line(client: SocketAddr, node: SocketAddr) -> String {
    let (client_ip, node_ip) = (client.ip().to_canonical(), node.ip().to_canonical());
    let mut line = String::with_capacity(MAX_V1_LINE);
    let _ = match (client_ip, node_ip) {
        (IpAddr::V4(c), IpAddr::V4(n)) => write!(line, "PROXY TCP4 {c} {n}"),
        (c, n) => write!(line, "PROXY TCP6 {} {}", as_v6(c), as_v6(n)),
    };
    let _ = write!(line, " {} {}\r\n", client.port(), node.port());
    line
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests;
