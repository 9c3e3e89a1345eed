//! Not part of elbe's API: what the criterion benchmarks in `benches/` time. The request path's functions are
//! private to the crate; these wrappers call them unchanged, so the benchmarks measure the real code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use crate::data_plane::back_end::pool::Pool;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::headers::sticky_cookie::{lb_set_cookie, CookieKey};
use crate::data_plane::headers::{self, ForwardedProto};
use crate::data_plane::proxy::forwarded::rewrite_for_instance;
use crate::data_plane::proxy::rules::{first_match, RequestFacts};
use crate::data_plane::proxy::sticky::Plan;
use crate::data_plane::proxy::ListenerContext;
use crate::data_plane::routing::balancer::pick_least_outstanding;
use crate::data_plane::routing::surge::SurgeQueue;
use crate::data_plane::snapshot::{NodeSnapshot, Stickiness, StickyPolicy};
use crate::observability::metrics::Metrics;

/// One node listener's request path without sockets: its snapshot of `instances` instances, its metrics, and the
/// address of one client.
pub struct RequestPath {
    context: ListenerContext,
    peer: IpAddr,
}

impl RequestPath {
    pub fn new(instances: usize) -> Self {
        let candidates = (0..instances)
            .map(|i| {
                let addr =
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)), 8000 + i as u16);
                let pool = Pool::new(addr, 16, Duration::from_secs(60), Duration::from_secs(5));
                Arc::new(Target::new(
                    format!("i-{i}").into(),
                    "zone-a".into(),
                    addr,
                    pool,
                ))
            })
            .collect();
        let metrics = Metrics::new();
        let context = ListenerContext {
            routes: Arc::new(ArcSwap::from_pointee(NodeSnapshot {
                candidates,
                idle_timeout: Duration::from_secs(60),
                ..NodeSnapshot::default()
            })),
            proto: ForwardedProto::http(),
            port: HeaderValue::from_static("80"),
            node_host: HeaderValue::from_static("127.0.0.11"),
            max_uri_bytes: 16384,
            metrics: Arc::new(metrics.zone("web", "zone-a")),
            passive: None,
            access_log: None,
            surge: SurgeQueue::new(0, 1024),
            instance_tls: None,
        };
        RequestPath {
            context,
            peer: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 22)),
        }
    }

    /// Loads the snapshot and picks an instance (least outstanding requests, power of two choices).
    pub fn pick(&self) -> Option<SocketAddr> {
        let routes = self.context.routes.load();
        pick_least_outstanding(&routes.candidates).map(|target| target.addr)
    }

    /// Rewrites a client's request for the instance (hop-by-hop headers, X-Forwarded-*, Host, origin form), with
    /// the client's X-Forwarded-For text from the worker's cache, as the Forwarded layer takes it per request.
    pub fn rewrite(&self, request: &mut Request<()>) {
        let peer = headers::peer_value(self.peer);
        rewrite_for_instance(request, &peer, &self.context);
    }

    /// The metric updates a proxied request makes: RequestCount, HTTPCode_Backend_2XX, Latency, bytes both ways.
    pub fn count(&self) {
        let metrics = &self.context.metrics;
        metrics.requests.inc();
        metrics.backend_status(200);
        metrics.latency.observe(0.000_42);
        metrics.received_bytes.inc_by(412);
        metrics.sent_bytes.inc_by(1380);
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), as on the request path.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    headers::strip_hop_by_hop(headers);
}

/// Sets ELB's X-Forwarded-* headers for `peer` on an HTTPS listener on port 443.
pub fn set_forwarded_https_443(headers: &mut HeaderMap, peer: IpAddr) {
    headers::set_forwarded(
        headers,
        peer,
        &ForwardedProto::https(),
        &headers::forwarded_port(443),
    );
}

/// The Check layer's checks of one request head; whether it passes.
pub fn check_request(method: &Method, uri: &Uri, version: Version, headers: &HeaderMap) -> bool {
    headers::check_request(method, uri, version, headers, 16384).is_ok()
}

/// The Rules and Sticky layers' per-request work, on a listener with or without rules and a stickiness policy.
pub struct TrafficPath {
    path: RequestPath,
    peer: IpAddr,
}

impl TrafficPath {
    /// `instances` instances; `rules`: the seed's three (restricted export by source address, its 403, an apex
    /// redirect); `sticky`: an LB-cookie policy with `MAX-AGE=600`.
    pub fn new(instances: usize, rules: bool, sticky: bool) -> Self {
        let path = RequestPath::new(instances);
        let routes = path.context.routes.load_full();
        let rules: std::sync::Arc<[crate::config::Rule]> = if rules {
            seed_rules().into()
        } else {
            std::sync::Arc::from(Vec::new())
        };
        let stickiness = sticky.then(|| {
            Stickiness::new(
                StickyPolicy::LbCookie { max_age: Some(600) },
                CookieKey::new(b"0123456789abcdef0123456789abcdef", "web", 8000),
                &routes.candidates,
            )
        });
        path.context.routes.store(Arc::new(NodeSnapshot {
            candidates: routes.candidates.clone(),
            idle_timeout: routes.idle_timeout,
            stickiness,
            rules,
        }));
        TrafficPath {
            path,
            peer: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 22)),
        }
    }

    /// The Rules layer's decision: whether a rule answers the request itself (redirect or fixed response).
    pub fn rules_answer(&self, request: &Request<()>) -> bool {
        let routes = self.path.context.routes.load();
        if routes.rules.is_empty() {
            return false;
        }
        let facts = RequestFacts::of(request, self.peer);
        !matches!(
            first_match(&routes.rules, &facts),
            None | Some(crate::config::RuleAction::Forward)
        )
    }

    /// The Sticky layer's work on the way in: the instance the request's AWSELB cookie names, if good.
    pub fn sticky_target(&self, request: &Request<()>) -> Option<SocketAddr> {
        let routes = self.path.context.routes.load();
        routes.stickiness.as_ref()?;
        let plan = Plan::for_request(arc_swap::Guard::into_inner(routes), request.headers());
        plan.stuck.as_ref().map(|target| target.addr)
    }

    /// The Sticky layer's work on a new session's response: the cookie value and its `Set-Cookie` line.
    pub fn new_cookie(&self, instance_id: &str) -> Option<HeaderValue> {
        let routes = self.path.context.routes.load();
        let stickiness = routes.stickiness.as_ref()?;
        lb_set_cookie(&stickiness.key.encode(instance_id), Some(600))
    }
}

/// The seed's rules (DESIGN.md "Listener rules"): export allowed from a block, else 403; the apex redirected.
fn seed_rules() -> Vec<crate::config::Rule> {
    use crate::config::{
        FixedResponse, Pattern, Redirect, RedirectProtocol, Rule, RuleAction, Template,
    };
    let rule = |priority, action| Rule {
        load_balancer_port: 80,
        priority,
        path_pattern: vec![],
        host_header: vec![],
        http_request_method: vec![],
        source_ip: vec![],
        action,
    };
    let mut allowed = rule(10, RuleAction::Forward);
    allowed.path_pattern = vec![Pattern::new("/export/*", false)];
    allowed.source_ip = vec![
        "203.0.113.0/24".parse().unwrap_or_else(|_| unreachable!()),
        "2001:db8::/32".parse().unwrap_or_else(|_| unreachable!()),
    ];
    let mut denied = rule(
        20,
        RuleAction::FixedResponse(FixedResponse {
            status_code: 403,
            content_type: Some("text/plain".into()),
            message_body: "export controlled".into(),
        }),
    );
    denied.path_pattern = vec![Pattern::new("/export/*", false)];
    let mut apex = rule(
        30,
        RuleAction::Redirect(Redirect {
            protocol: Some(RedirectProtocol::Https),
            host: Template::new("www.example.com", &["host"]).ok(),
            port: Some(443),
            path: None,
            query: None,
            status_code: 301,
        }),
    );
    apex.host_header = vec![Pattern::new("example.com", true)];
    vec![allowed, denied, apex]
}

/// Relays bytes both ways between `client` and `instance` with elbe's tunnel (TCP listeners and WebSockets),
/// until both directions have ended; returns the bytes moved (to the instance, to the client).
pub async fn tunnel_relay(
    mut client: tokio::net::TcpStream,
    instance: tokio::net::TcpStream,
) -> std::io::Result<(u64, u64)> {
    let mut tunnel = crate::data_plane::tunnel::Tunnel::uncounted(
        instance,
        bytes::Bytes::new(),
        bytes::Bytes::new(),
        Duration::from_secs(60),
    );
    std::future::poll_fn(|cx| tunnel.poll(cx, &mut client)).await?;
    Ok((tunnel.received(), tunnel.sent()))
}

/// Relays bytes both ways between `client` and `instance` with a TCP listener's splice(2) copy loop, until both
/// directions have ended; returns the bytes moved (to the instance, to the client).
pub async fn splice_relay(
    client: tokio::net::TcpStream,
    instance: tokio::net::TcpStream,
) -> std::io::Result<(u64, u64)> {
    let counter =
        || prometheus::IntCounter::new("bench_bytes", "bytes").map_err(std::io::Error::other);
    let mut tunnel = crate::data_plane::tcp::splice::SpliceTunnel::new(
        client,
        instance,
        bytes::Bytes::new(),
        Duration::from_secs(60),
        counter()?,
        counter()?,
    )?;
    std::future::poll_fn(|cx| tunnel.poll(cx)).await?;
    Ok((tunnel.received(), tunnel.sent()))
}

/// HPACK's decoder (`http2::hpack::Decoder`) as a connection holds one: a 4,096-byte table, a 64 KiB header-list
/// limit.
pub struct HpackDecoder(crate::http2::hpack::Decoder);

impl Default for HpackDecoder {
    fn default() -> Self {
        HpackDecoder(crate::http2::hpack::Decoder::new(
            crate::http2::hpack::DEFAULT_TABLE_SIZE,
            64 * 1024,
        ))
    }
}

impl HpackDecoder {
    /// Decodes one header block, adding up its fields' lengths: the codec's cost alone.
    pub fn decode(&mut self, block: &bytes::Bytes) -> Result<usize, String> {
        let mut total = 0;
        self.0
            .decode(block, |field| total += field.name.len() + field.value.len())
            .map_err(|error| error.to_string())?;
        Ok(total)
    }

    /// Decodes one header block into the `http::HeaderMap` of its regular fields (pseudo-header fields skipped),
    /// as a connection building a request will: values shared with the block, not copied.
    pub fn decode_header_map(&mut self, block: &bytes::Bytes) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::with_capacity(16);
        let mut refused = None;
        self.0
            .decode(block, |field| {
                if field.name.starts_with(b":") {
                    return;
                }
                let name = http::HeaderName::from_bytes(&field.name);
                let value = HeaderValue::from_maybe_shared(field.value);
                match (name, value) {
                    (Ok(name), Ok(value)) => {
                        map.append(name, value);
                    }
                    _ => refused = Some("a field that is not valid HTTP"),
                }
            })
            .map_err(|error| error.to_string())?;
        match refused {
            Some(reason) => Err(reason.to_owned()),
            None => Ok(map),
        }
    }
}

/// HPACK's encoder (`http2::hpack::Encoder`) as a connection holds one.
#[derive(Default)]
pub struct HpackEncoder(crate::http2::hpack::Encoder);

impl HpackEncoder {
    /// Encodes one header block of `fields` (lowercase names) onto `dst`.
    pub fn encode(&mut self, fields: &[(&str, &str)], dst: &mut bytes::BytesMut) {
        self.0.encode(
            fields
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
            dst,
        );
    }
}

/// What an HTTP/2 client sends for `requests` uploads on one connection, as frames: per request a HEADERS frame
/// (a `header_block`-byte block, END_HEADERS), a DATA frame of `body` bytes (END_STREAM) and a WINDOW_UPDATE for
/// the connection, written with elbe's own frame writers.
pub fn h2_request_frames(requests: u32, header_block: usize, body: usize) -> bytes::BytesMut {
    use crate::http2::frame::{
        write_data, write_headers, write_window_update, DEFAULT_MAX_FRAME_SIZE,
    };
    let mut buf = bytes::BytesMut::new();
    let (block, data) = (vec![0x82; header_block], vec![b'x'; body]);
    for request in 0..requests {
        let stream = 2 * request + 1;
        write_headers(&mut buf, stream, &block, false, DEFAULT_MAX_FRAME_SIZE);
        write_data(&mut buf, stream, &data, true);
        write_window_update(&mut buf, 0, 65_535);
    }
    buf
}

/// Reads every frame in `buf` as elbe's HTTP/2 server does (`http2::frame::read_frame`, SETTINGS_MAX_FRAME_SIZE
/// 16,384); returns how many there were, or the first refusal's words.
pub fn h2_read_frames(mut buf: bytes::BytesMut) -> Result<usize, String> {
    use crate::http2::frame::{read_frame, DEFAULT_MAX_FRAME_SIZE};
    let mut frames = 0;
    while let Some(frame) =
        read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).map_err(|e| e.to_string())?
    {
        std::hint::black_box(frame);
        frames += 1;
    }
    Ok(frames)
}

/// Appends what elbe's HTTP/2 server writes ahead of each of `responses` response bodies: HEADERS (a
/// `header_block`-byte block, END_HEADERS) and the 9-byte header of a `body`-byte DATA frame (END_STREAM), whose
/// payload goes out from its own buffer.
pub fn h2_write_responses(
    buf: &mut bytes::BytesMut,
    responses: u32,
    header_block: &[u8],
    body: usize,
) {
    use crate::http2::frame::{write_data_header, write_headers, DEFAULT_MAX_FRAME_SIZE};
    for response in 0..responses {
        let stream = 2 * response + 1;
        write_headers(buf, stream, header_block, false, DEFAULT_MAX_FRAME_SIZE);
        write_data_header(buf, stream, body, true);
    }
}
