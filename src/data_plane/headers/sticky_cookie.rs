//! The `AWSELB` cookie (ELB-SPEC §6): its value, reading it from a request's `Cookie` headers, reading an
//! application's cookie from a response's `Set-Cookie` lines, and writing ELB's `Set-Cookie`.
//!
//! Rule: ELB's wire format, `AWSELB=<upper-case hex>;PATH=/;MAX-AGE=<s>` with no spaces and upper-case attributes,
//! no MAX-AGE for a session cookie, `Cache-control: no-cache="set-cookie"` beside it. For application-cookie
//! stickiness AWSELB's lifetime is the application cookie's (its Max-Age, else its Expires, else none), and its
//! `Secure`/`HttpOnly` are copied; a `Set-Cookie` that ends in `;` is ignored, as ELB ignored it.
//!
//! The value is `HEX(1 || instance id || tag)`: a version byte, the instance id, and the first 16 bytes of
//! HMAC-SHA-256 over the load balancer's name, the listener's instance port and the instance id. The id is not
//! secret (ELB's value was encrypted; elbe only needs it unforgeable): a client that edits it, or pastes another
//! load balancer's or another back-end port's cookie, fails the tag and gets a fresh pick and a fresh cookie. The
//! tag is checked in constant time. Trade-off: 128 bits of tag rather than 256 keep the cookie short (ELB's was
//! ~140 characters; elbe's is 34 plus twice the id's length) and are far beyond guessing.

use std::fmt::Write;

use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderValue, COOKIE};
use sha2::Sha256;

/// The cookie's name (ELB-SPEC §6).
pub(crate) const AWSELB: &str = "AWSELB";
/// The value ELB sends in `Cache-control` beside a new AWSELB cookie.
pub(crate) const NO_CACHE_SET_COOKIE: HeaderValue =
    HeaderValue::from_static("no-cache=\"set-cookie\"");

/// The value format's version byte.
const VERSION: u8 = 1;
/// Bytes of the HMAC kept in the cookie.
const TAG_BYTES: usize = 16;
/// Longest instance id a cookie may name (ids are labels of at most 255 bytes).
const MAX_ID_BYTES: usize = 255;

/// The key that makes and checks AWSELB values for one listener: an HMAC-SHA-256 state already fed the load
/// balancer and the listener's instance port, so a request costs the id and two compressions.
#[derive(Clone)]
pub(crate) struct CookieKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// The key for one listener (`instance_port`) of `load_balancer`.
    pub(crate) fn new(secret: &[u8], load_balancer: &str, instance_port: u16) -> Self {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"elbe AWSELB v1\0");
        mac.update(load_balancer.as_bytes());
        mac.update(b"\0");
        mac.update(&instance_port.to_be_bytes());
        CookieKey { mac }
    }

    fn tag(&self, instance_id: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(instance_id);
        mac
    }

    /// The cookie value naming `instance_id`.
    pub(crate) fn encode(&self, instance_id: &str) -> String {
        let tag = self.tag(instance_id.as_bytes()).finalize().into_bytes();
        let mut value = String::with_capacity(2 * (1 + instance_id.len() + TAG_BYTES));
        let bytes = std::iter::once(VERSION)
            .chain(instance_id.bytes())
            .chain(tag.iter().take(TAG_BYTES).copied());
        for byte in bytes {
            let _ = write!(value, "{byte:02X}");
        }
        value
    }

    /// The instance id a cookie value names, if this key made it; `None` for anything else.
    pub(crate) fn decode(&self, value: &[u8]) -> Option<String> {
        if !value.len().is_multiple_of(2)
            || value.len() < 2 * (1 + 1 + TAG_BYTES)
            || value.len() > 2 * (1 + MAX_ID_BYTES + TAG_BYTES)
        {
            return None;
        }
        let mut bytes = Vec::with_capacity(value.len() / 2);
        for pair in value.chunks_exact(2) {
            bytes.push(hex(pair[0])? << 4 | hex(pair[1])?);
        }
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (id, tag) = rest.split_at(rest.len() - TAG_BYTES);
        self.tag(id).verify_truncated_left(tag).ok()?;
        String::from_utf8(id.to_vec()).ok()
    }
}

/// One upper-case hex digit's value (ELB's values are upper-case; lower-case is not a value elbe made).
fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The values of every cookie named `name` in a request's `Cookie` headers (HTTP/2 clients may send several
/// headers), in order.
pub(crate) fn request_cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let (key, value) = split_once(pair, b'=')?;
            (key.trim_ascii() == name.as_bytes()).then(|| value.trim_ascii())
        })
}

/// What an application's `Set-Cookie` for the followed cookie says about its lifetime and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppCookie {
    pub lifetime: Lifetime,
    pub secure: bool,
    pub http_only: bool,
}

/// How long a cookie lives in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// No Max-Age or Expires: until the browser session ends.
    Session,
    /// `Max-Age` (seconds; 0 or less removes the cookie), which wins over `Expires` (RFC 6265 §5.3).
    MaxAge(i64),
    /// `Expires`, as the application wrote the date.
    Expires(String),
}

/// The application cookie `name` set by one `Set-Cookie` value, if it is one; a value ending in `;` is ignored
/// (ELB-SPEC §6).
pub(crate) fn app_cookie(set_cookie: &[u8], name: &str) -> Option<AppCookie> {
    let line = set_cookie.trim_ascii();
    if line.ends_with(b";") {
        return None;
    }
    let mut parts = line.split(|&b| b == b';');
    let (key, _) = split_once(parts.next()?, b'=')?;
    if key.trim_ascii() != name.as_bytes() {
        return None;
    }
    let mut cookie = AppCookie {
        lifetime: Lifetime::Session,
        secure: false,
        http_only: false,
    };
    let mut max_age = None;
    for attribute in parts {
        let attribute = attribute.trim_ascii();
        let (key, value) = split_once(attribute, b'=').unwrap_or((attribute, b""));
        let key = key.trim_ascii();
        let value = value.trim_ascii();
        if key.eq_ignore_ascii_case(b"secure") {
            cookie.secure = true;
        } else if key.eq_ignore_ascii_case(b"httponly") {
            cookie.http_only = true;
        } else if key.eq_ignore_ascii_case(b"max-age") {
            max_age = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<i64>().ok());
        } else if key.eq_ignore_ascii_case(b"expires") && !value.is_empty() {
            if let Ok(date) = std::str::from_utf8(value) {
                cookie.lifetime = Lifetime::Expires(date.to_owned());
            }
        }
    }
    if let Some(seconds) = max_age {
        cookie.lifetime = Lifetime::MaxAge(seconds);
    }
    Some(cookie)
}

/// ELB's `Set-Cookie` for LB-cookie stickiness: `AWSELB=<value>;PATH=/;MAX-AGE=<s>`, or without MAX-AGE for a
/// session cookie.
pub(crate) fn lb_set_cookie(value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
    let mut line = format!("{AWSELB}={value};PATH=/");
    if let Some(seconds) = max_age {
        let _ = write!(line, ";MAX-AGE={seconds}");
    }
    HeaderValue::try_from(line).ok()
}

/// ELB's `Set-Cookie` for application-cookie stickiness: the application cookie's lifetime and flags.
pub(crate) fn app_set_cookie(value: &str, app: &AppCookie) -> Option<HeaderValue> {
    let mut line = format!("{AWSELB}={value};PATH=/");
    match &app.lifetime {
        Lifetime::Session => {}
        Lifetime::MaxAge(seconds) => {
            let _ = write!(line, ";MAX-AGE={}", (*seconds).max(0));
        }
        Lifetime::Expires(date) => {
            let _ = write!(line, ";EXPIRES={date}");
        }
    }
    if app.secure {
        line.push_str(";SECURE");
    }
    if app.http_only {
        line.push_str(";HTTPONLY");
    }
    HeaderValue::try_from(line).ok()
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CookieKey {
        CookieKey::new(b"0123456789abcdef0123456789abcdef", "web", 8000)
    }

    #[test]
    fn a_value_names_its_instance_in_upper_case_hex_and_round_trips() {
        let value = key().encode("i-a1");
        assert_eq!(value.len(), 2 * (1 + 4 + 16));
        assert!(value.starts_with("01692D6131"), "{value}");
        assert!(value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert_eq!(key().decode(value.as_bytes()).as_deref(), Some("i-a1"));
    }

    #[test]
    fn an_edited_value_or_another_listeners_fails() {
        let value = key().encode("i-a1");
        // The id edited to name another instance, the tag kept.
        let forged = value.replacen("692D6131", "692D6132", 1);
        assert_eq!(key().decode(forged.as_bytes()), None);
        // One tag bit flipped.
        let mut flipped = value.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(key().decode(&flipped), None);
        // Another back-end port, another load balancer, another secret.
        for other in [
            CookieKey::new(b"0123456789abcdef0123456789abcdef", "web", 8001),
            CookieKey::new(b"0123456789abcdef0123456789abcdef", "api", 8000),
            CookieKey::new(b"another secret, sixteen bytes+", "web", 8000),
        ] {
            assert_eq!(other.decode(value.as_bytes()), None);
        }
        for junk in [
            "",
            "zz",
            "01",
            &value.to_lowercase(),
            &value[..value.len() - 1],
        ] {
            assert_eq!(key().decode(junk.as_bytes()), None, "{junk}");
        }
    }

    #[test]
    fn cookies_are_found_across_headers_and_pairs() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; AWSELB=ONE"));
        headers.append(COOKIE, HeaderValue::from_static("AWSELBX=no;AWSELB = TWO "));
        let found: Vec<&[u8]> = request_cookies(&headers, AWSELB).collect();
        assert_eq!(found, [&b"ONE"[..], b"TWO"]);
    }

    #[test]
    fn app_cookies_give_lifetime_and_flags_and_a_trailing_semicolon_is_ignored() {
        let cookie = |line: &str| app_cookie(line.as_bytes(), "JSESSIONID");
        assert_eq!(
            cookie("JSESSIONID=abc; Path=/; Max-Age=300; Secure; HttpOnly"),
            Some(AppCookie {
                lifetime: Lifetime::MaxAge(300),
                secure: true,
                http_only: true
            })
        );
        assert_eq!(
            cookie("JSESSIONID=abc; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(AppCookie {
                lifetime: Lifetime::Expires("Wed, 21 Oct 2015 07:28:00 GMT".into()),
                secure: false,
                http_only: false
            })
        );
        assert_eq!(
            cookie("JSESSIONID=abc").map(|c| c.lifetime),
            Some(Lifetime::Session)
        );
        assert_eq!(cookie("JSESSIONID=abc; Path=/;"), None);
        assert_eq!(cookie("OTHER=abc"), None);
    }

    #[test]
    fn set_cookie_lines_are_elbs_exactly() {
        assert_eq!(
            lb_set_cookie("AB", Some(600)).unwrap(),
            "AWSELB=AB;PATH=/;MAX-AGE=600"
        );
        assert_eq!(lb_set_cookie("AB", None).unwrap(), "AWSELB=AB;PATH=/");
        let app = AppCookie {
            lifetime: Lifetime::MaxAge(-1),
            secure: true,
            http_only: true,
        };
        assert_eq!(
            app_set_cookie("AB", &app).unwrap(),
            "AWSELB=AB;PATH=/;MAX-AGE=0;SECURE;HTTPONLY"
        );
    }
}
