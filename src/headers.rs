//! TEMPORARY stub with the agreed API; replaced by the real module.
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use std::net::IpAddr;
pub struct ForwardedProto(pub HeaderValue);
impl ForwardedProto {
    pub fn http() -> Self {
        ForwardedProto(HeaderValue::from_static("http"))
    }
    pub fn https() -> Self {
        ForwardedProto(HeaderValue::from_static("https"))
    }
}
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &ForwardedProto,
    port: &HeaderValue,
) {
    let v = match headers.get("x-forwarded-for") {
        Some(v) => format!("{}, {}", v.to_str().unwrap_or(""), peer),
        None => peer.to_string(),
    };
    headers.insert("x-forwarded-for", HeaderValue::from_str(&v).unwrap());
    headers.insert("x-forwarded-proto", proto.0.clone());
    headers.insert("x-forwarded-port", port.clone());
}
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(h);
    }
}
pub fn trusted_client_ip(_headers: &HeaderMap, _trusted_hops: usize) -> Option<IpAddr> {
    None
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("uri too long")]
    UriTooLong,
}
pub fn check_request(
    method: &Method,
    _uri: &Uri,
    _version: Version,
    headers: &HeaderMap,
    _max_uri_bytes: usize,
) -> Result<(), Rejection> {
    if method == Method::CONNECT {
        return Err(Rejection::BadRequest("CONNECT"));
    }
    if headers.contains_key("content-length") && headers.contains_key("transfer-encoding") {
        return Err(Rejection::BadRequest("both"));
    }
    Ok(())
}
