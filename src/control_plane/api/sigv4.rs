//! AWS Signature Version 4, verified: every API call must carry a signature made with the configured key for
//! service `elasticloadbalancing` and the configured region (DESIGN.md "The ELB API"; issue 15).
//!
//! Rule, from AWS's SigV4 reference: the canonical request is the method, the path with each segment
//! URI-encoded, the query parameters URI-encoded and sorted (without `X-Amz-Signature`), the signed headers
//! lower-cased with their values trimmed and inner runs of spaces collapsed, the signed header names, and the
//! payload's SHA-256 (or `x-amz-content-sha256` when the caller signed that header). The string to sign is
//! `AWS4-HMAC-SHA256`, the date, the scope and the canonical request's hash; the key is HMAC'd down from
//! `AWS4<secret>` through date, region, service and `aws4_request`. The signature may come in the
//! `Authorization` header or in the query string (`X-Amz-Algorithm`, `X-Amz-Credential`, …, presigned URLs).
//! A date more than 15 minutes from elbe's wall clock (a presigned URL: past its `X-Amz-Expires`) is
//! `RequestExpired`, as AWS answers.
//!
//! The codes, in the order they are decided: no signature at all `MissingAuthenticationToken` (403); one that
//! cannot be read `IncompleteSignature` (400); an unknown key id `InvalidClientTokenId` (403); a date too far
//! from now `RequestExpired` (400); a scope for another date, region or service, or a signature the secret does
//! not make, `SignatureDoesNotMatch` (403). The signature is compared in constant time (`hmac`'s
//! `verify_slice`), so the comparison leaks nothing about how much of a forged signature was right.
//!
//! Trade-off: no maintained crate verifies SigV4 on the server side (`aws-sigv4` only signs), so this is
//! written here from the spec and checked against AWS's published test-suite vectors and `aws-sigv4` itself.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::timestamp::parse_amz_date;

/// The signing name of ELB (ELB-SPEC §13).
pub(crate) const SERVICE: &str = "elasticloadbalancing";

/// How far a signature's date may be from elbe's clock, either way.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const MISMATCH: &str =
    "The request signature we calculated does not match the signature you provided. \
                        Check your AWS Secret Access Key and signing method.";

type HmacSha256 = Hmac<Sha256>;

/// Who may sign, and for what.
pub(crate) struct Verifier<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The parts of an HTTP request a signature covers.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as it came on the wire (still percent-encoded).
    pub path: &'a str,
    /// The query string as it came, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The authority of an HTTP/2 request, which has no `Host` header (`host` is then signed as this).
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
}

/// A signature's parts, wherever it came from.
struct Signature {
    credential: String,
    signed_headers: String,
    signature: String,
    date: String,
    /// `X-Amz-Expires` of a presigned URL: the signature is good this long after its date.
    expires: Option<Duration>,
    /// A presigned URL: its payload is signed as the body's hash or as `UNSIGNED-PAYLOAD`.
    in_query: bool,
}

impl Verifier<'_> {
    /// Whether `request` carries a good signature from this key, at `now` by the wall clock.
    pub(crate) fn verify(
        &self,
        request: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let signature = signature_of(request)?;
        let scope: Vec<&str> = signature.credential.split('/').collect();
        let [key, day, region, service, terminator] = scope[..] else {
            return Err(ApiError::incomplete_signature(format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/aws4_request, got '{}'",
                signature.credential
            )));
        };
        if key != self.access_key_id {
            return Err(ApiError::invalid_client_token_id());
        }
        let Some(signed_at) = parse_amz_date(&signature.date) else {
            return Err(ApiError::incomplete_signature(format!(
                "X-Amz-Date must be in the ISO 8601 basic format yyyyMMdd'T'HHmmss'Z', got '{}'",
                signature.date
            )));
        };
        check_time(signed_at, &signature, now)?;
        check_scope(
            &signature.date,
            day,
            (region, self.region),
            (service, self.service),
            terminator,
        )?;
        let scope = signature.credential[key.len() + 1..].to_owned();
        let key = signing_key(self.secret_access_key, day, region, service);
        let expected = data_encoding::HEXLOWER_PERMISSIVE
            .decode(signature.signature.as_bytes())
            .map_err(|_| ApiError::signature_does_not_match(MISMATCH))?;
        for payload in payload_hashes(request, &signature)? {
            let canonical = canonical_request(request, &signature.signed_headers, &payload);
            let string_to_sign = format!(
                "{ALGORITHM}\n{}\n{scope}\n{}",
                signature.date,
                hex_sha256(canonical.as_bytes())
            );
            let mut mac = hmac(&key);
            mac.update(string_to_sign.as_bytes());
            if mac.verify_slice(&expected).is_ok() {
                return Ok(());
            }
        }
        Err(ApiError::signature_does_not_match(MISMATCH))
    }
}

/// The signature's parts, from the `Authorization` header or the query string.
fn signature_of(request: &SignedRequest<'_>) -> Result<Signature, ApiError> {
    if let Some(header) = request.headers.get(http::header::AUTHORIZATION) {
        let header = header
            .to_str()
            .map_err(|_| ApiError::incomplete_signature("The Authorization header is not text"))?;
        return from_header(header, request.headers);
    }
    let query = query_pairs(request.query);
    let find = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let Some(algorithm) = find("X-Amz-Algorithm") else {
        return Err(ApiError::missing_authentication_token());
    };
    if algorithm != ALGORITHM {
        return Err(ApiError::incomplete_signature(format!(
            "X-Amz-Algorithm must be {ALGORITHM}, got '{algorithm}'"
        )));
    }
    let part = |name: &str| {
        find(name).ok_or_else(|| {
            ApiError::incomplete_signature(format!("The query-string signature needs {name}"))
        })
    };
    let expires = match find("X-Amz-Expires") {
        None => None,
        Some(text) => Some(Duration::from_secs(text.parse().map_err(|_| {
            ApiError::incomplete_signature(format!(
                "X-Amz-Expires must be a number of seconds, got '{text}'"
            ))
        })?)),
    };
    Ok(Signature {
        credential: part("X-Amz-Credential")?,
        signed_headers: part("X-Amz-SignedHeaders")?,
        signature: part("X-Amz-Signature")?,
        date: part("X-Amz-Date")?,
        expires,
        in_query: true,
    })
}

/// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`, dated by `X-Amz-Date`.
fn from_header(header: &str, headers: &HeaderMap) -> Result<Signature, ApiError> {
    let Some(fields) = header
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
    else {
        return Err(ApiError::incomplete_signature(format!(
            "The Authorization header must start with '{ALGORITHM} ' (elbe speaks Signature Version 4 only)"
        )));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in fields.split(',') {
        let (name, value) = field.trim().split_once('=').unwrap_or((field.trim(), ""));
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        *slot = Some(value.to_owned());
    }
    let missing = |name: &str| {
        ApiError::incomplete_signature(format!("Authorization header requires '{name}' parameter"))
    };
    let date = headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            ApiError::incomplete_signature(
                "Authorization header requires existence of a 'X-Amz-Date' header",
            )
        })?;
    Ok(Signature {
        credential: credential.ok_or_else(|| missing("Credential"))?,
        signed_headers: signed_headers.ok_or_else(|| missing("SignedHeaders"))?,
        signature: signature.ok_or_else(|| missing("Signature"))?,
        date: date.to_owned(),
        expires: None,
        in_query: false,
    })
}

/// Within 15 minutes of `now` either way; a presigned URL instead until its `X-Amz-Expires` (and not dated
/// more than 15 minutes ahead).
fn check_time(
    signed_at: SystemTime,
    signature: &Signature,
    now: SystemTime,
) -> Result<(), ApiError> {
    let ahead = signed_at.duration_since(now).unwrap_or_default();
    let behind = now.duration_since(signed_at).unwrap_or_default();
    let good_for = signature.expires.unwrap_or(MAX_SKEW);
    if ahead > MAX_SKEW || behind > good_for {
        return Err(ApiError::request_expired(format!(
            "Request has expired: it is signed at {} and elbe's clock says {}; a signature is good for {} s",
            signature.date,
            super::timestamp::amz_date(now),
            good_for.as_secs()
        )));
    }
    Ok(())
}

/// The credential's scope must be the signature's own day, this region and this service.
fn check_scope(
    date: &str,
    day: &str,
    (region, expected_region): (&str, &str),
    (service, expected_service): (&str, &str),
    terminator: &str,
) -> Result<(), ApiError> {
    if !date.starts_with(day) || day.len() != 8 {
        return Err(ApiError::signature_does_not_match(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{day}' != '{}'",
            &date[..8.min(date.len())]
        )));
    }
    if region != expected_region {
        return Err(ApiError::signature_does_not_match(format!(
            "Credential should be scoped to a valid region, not '{region}': this elbe's region is '{expected_region}'"
        )));
    }
    if service != expected_service {
        return Err(ApiError::signature_does_not_match(format!(
            "Credential should be scoped to correct service: '{expected_service}', not '{service}'"
        )));
    }
    if terminator != "aws4_request" {
        return Err(ApiError::signature_does_not_match(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'"
        )));
    }
    Ok(())
}

/// The payload hashes the signer may have used: the body's, or what `x-amz-content-sha256` says (checked
/// against the body unless it is `UNSIGNED-PAYLOAD`); a presigned URL may also sign `UNSIGNED-PAYLOAD`.
fn payload_hashes(
    request: &SignedRequest<'_>,
    signature: &Signature,
) -> Result<Vec<String>, ApiError> {
    let body = hex_sha256(request.body);
    if let Some(claimed) = request.headers.get("x-amz-content-sha256") {
        let claimed = claimed.to_str().unwrap_or_default().to_owned();
        if claimed != UNSIGNED_PAYLOAD && !claimed.eq_ignore_ascii_case(&body) {
            return Err(ApiError::signature_does_not_match(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
        return Ok(vec![claimed]);
    }
    if signature.in_query {
        return Ok(vec![body, UNSIGNED_PAYLOAD.to_owned()]);
    }
    Ok(vec![body])
}

/// AWS's canonical request (SigV4 reference, "Create a canonical request").
fn canonical_request(request: &SignedRequest<'_>, signed_headers: &str, payload: &str) -> String {
    let mut query: Vec<(String, String)> = query_pairs(request.query)
        .into_iter()
        .filter(|(key, _)| key != "X-Amz-Signature")
        .map(|(key, value)| (uri_encode(&key, true), uri_encode(&value, true)))
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = request
            .headers
            .get_all(name)
            .iter()
            .map(|value| collapse_spaces(&String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let value = match (values.is_empty(), name, request.authority) {
            (true, "host", Some(authority)) => authority.to_owned(),
            _ => values.join(","),
        };
        headers.push_str(&format!("{name}:{value}\n"));
    }
    format!(
        "{}\n{}\n{}\n{headers}\n{signed_headers}\n{payload}",
        request.method,
        canonical_path(request.path),
        query.join("&")
    )
}

/// Each segment of the path decoded and URI-encoded once more (AWS's rule for services other than S3,
/// as its test suite applies it); an empty path is `/`.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|segment| uri_encode(&percent_decode(segment), true))
        .collect::<Vec<_>>()
        .join("/")
}

/// The query string's pairs, decoded as the call's parameters are (`form_urlencoded`): `%XX` escapes, and a raw
/// `+` is a space. A SigV4 signer never sends a raw `+` (it writes a plus as `%2B` and a space as `%20`), so a raw
/// one comes from a form encoder meaning a space; reading it so here too means the value that was signed is the
/// value the action gets.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| percent_decode(&text.replace('+', " "));
            (decode(key), decode(value))
        })
        .collect()
}

/// `%XX` escapes decoded; a `%` without two hex digits stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SigV4's URI encoding: unreserved characters (`A-Z a-z 0-9 - _ . ~`) as they are, every other byte `%XX`
/// in upper case; `/` too when `slash` says so.
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A header value trimmed, with each inner run of spaces made one space.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [day, region, service, "aws4_request"] {
        let mut mac = hmac(&key);
        mac.update(part.as_bytes());
        key = mac.finalize().into_bytes().to_vec();
    }
    key
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
