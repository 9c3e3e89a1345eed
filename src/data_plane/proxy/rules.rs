//! Listener rules, a phase of Forward: a listener's `[[load_balancer.rule]]`s, tried lowest priority first; the first whose
//! conditions all match decides: `forward` (on to the instances), `redirect` or `fixed_response` (elbe answers
//! itself). No match forwards as usual. ALB's rule model (DESIGN.md "Listener rules"), since ELB Classic had none.
//!
//! Rule: `source_ip` is the peer address elbe saw on the connection, never `X-Forwarded-For`, which the client
//! writes. `host_header` matches the `Host` header (an HTTP/2 request's `:authority`) without its port,
//! ignoring case; `path_pattern` the path without the query, case-sensitive; `http_request_method` exactly.
//!
//! Trade-off: rules are tried by Forward, on the snapshot it loads anyway, rather than in a layer of their own: a
//! layer cost every request (rules or not) a move of the request and of its future, about 140 instructions
//! (callgrind). So they see the request after the Check layer (a request elbe refuses is refused whatever the rules
//! say) and after its rewriting (a redirect or fixed response pays for X-Forwarded-*, which it does not need; its
//! `Host` is the one the instance would get). Everything was compiled when the file was read; with no rules a
//! request pays an emptiness test.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION};
use http::{Request, Response, StatusCode};

use crate::config::{FixedResponse, Redirect, RedirectProtocol, RequestParts, Rule, RuleAction};
use crate::data_plane::proxy::context::ListenerContext;
use crate::data_plane::proxy::response_body::ResponseBody;

/// Marks a response a rule made, so it is counted (ALB's HTTP_Redirect_Count, HTTP_Fixed_Response_Count) and
/// logged as the load balancer's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleAnswer {
    Redirect,
    FixedResponse,
}

/// The answer of the listener's rules to `request`: `Some` when the first matching rule redirects or answers with
/// a fixed response, `None` when none matches or it forwards. `peer` is the connection's peer address.
pub(crate) fn answer<B>(
    rules: &[Rule],
    request: &Request<B>,
    peer: IpAddr,
    context: &ListenerContext,
) -> Option<Response<ResponseBody>> {
    let facts = RequestFacts::of(request, peer);
    match first_match(rules, &facts)? {
        RuleAction::Forward => None,
        RuleAction::Redirect(redirect) => Some(redirect_response(redirect, &facts, context)),
        RuleAction::FixedResponse(fixed) => Some(fixed_response(fixed)),
    }
}

/// What a rule's conditions read of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    pub method: &'a str,
    /// The host without its port, as the client wrote it.
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub peer: IpAddr,
}

impl<'a> RequestFacts<'a> {
    pub(crate) fn of<B>(request: &'a Request<B>, peer: IpAddr) -> Self {
        let authority = request
            .headers()
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default();
        RequestFacts {
            method: request.method().as_str(),
            host: without_port(authority),
            path: request.uri().path(),
            query: request.uri().query().unwrap_or_default(),
            peer,
        }
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn without_port(authority: &str) -> &str {
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// The action of the first rule (lowest priority) whose conditions all match.
pub(crate) fn first_match<'r>(
    rules: &'r [Rule],
    facts: &RequestFacts<'_>,
) -> Option<&'r RuleAction> {
    rules
        .iter()
        .find(|rule| matches(rule, facts))
        .map(|rule| &rule.action)
}

/// Every condition given matches, each by any of its values.
fn matches(rule: &Rule, facts: &RequestFacts<'_>) -> bool {
    let any = |empty: bool, hit: &dyn Fn() -> bool| empty || hit();
    any(rule.source_ip.is_empty(), &|| {
        rule.source_ip.iter().any(|net| net.contains(&facts.peer))
    }) && any(rule.http_request_method.is_empty(), &|| {
        rule.http_request_method.iter().any(|m| m == facts.method)
    }) && any(rule.host_header.is_empty(), &|| {
        rule.host_header
            .iter()
            .any(|p| p.matches(facts.host.as_bytes()))
    }) && any(rule.path_pattern.is_empty(), &|| {
        rule.path_pattern
            .iter()
            .any(|p| p.matches(facts.path.as_bytes()))
    })
}

/// ALB's redirect: `Location: protocol://host:port/path?query`, each part the request's own unless the rule says
/// otherwise; an empty body.
fn redirect_response(
    redirect: &Redirect,
    facts: &RequestFacts<'_>,
    context: &ListenerContext,
) -> Response<ResponseBody> {
    let listener_https = context.proto.is_https();
    let listener_port = context
        .port
        .to_str()
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(if listener_https { 443 } else { 80 });
    let parts = RequestParts {
        protocol: if listener_https { "HTTPS" } else { "HTTP" },
        host: facts.host,
        port: listener_port,
        path: facts.path.strip_prefix('/').unwrap_or(facts.path),
        query: facts.query,
    };
    let protocol = match redirect.protocol {
        Some(RedirectProtocol::Https) => "https",
        Some(RedirectProtocol::Http) => "http",
        None if listener_https => "https",
        None => "http",
    };
    let mut location = format!("{protocol}://");
    match &redirect.host {
        Some(host) => host.expand(&parts, &mut location),
        None => location.push_str(facts.host),
    }
    location.push(':');
    location.push_str(&redirect.port.unwrap_or(listener_port).to_string());
    match &redirect.path {
        Some(path) => path.expand(&parts, &mut location),
        None => location.push_str(facts.path),
    }
    let start = location.len();
    location.push('?');
    match &redirect.query {
        Some(query) => query.expand(&parts, &mut location),
        None => location.push_str(facts.query),
    }
    if location.len() == start + 1 {
        location.truncate(start);
    }
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() =
        StatusCode::from_u16(redirect.status_code).unwrap_or(StatusCode::FOUND);
    match HeaderValue::try_from(location) {
        Ok(location) => {
            response.headers_mut().insert(LOCATION, location);
        }
        // A request's own host or path can hold bytes a header may not; such a request gets no Location.
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response.extensions_mut().insert(RuleAnswer::Redirect);
    response
}

/// ALB's fixed response: the rule's status, content type and body.
fn fixed_response(fixed: &FixedResponse) -> Response<ResponseBody> {
    let body = Bytes::copy_from_slice(fixed.message_body.as_bytes());
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = StatusCode::from_u16(fixed.status_code).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(content_type) = fixed
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::try_from(t).ok())
    {
        headers.insert(CONTENT_TYPE, content_type);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(fixed.message_body.len()));
    response.extensions_mut().insert(RuleAnswer::FixedResponse);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IpNet, Pattern, Template};

    fn rule(priority: u32, action: RuleAction) -> Rule {
        Rule {
            load_balancer_port: 80,
            priority,
            path_pattern: vec![],
            host_header: vec![],
            http_request_method: vec![],
            source_ip: vec![],
            action,
        }
    }

    fn facts<'a>(method: &'a str, host: &'a str, path: &'a str, peer: &str) -> RequestFacts<'a> {
        RequestFacts {
            method,
            host,
            path,
            query: "",
            peer: peer.parse().unwrap(),
        }
    }

    fn fixed(status_code: u16) -> RuleAction {
        RuleAction::FixedResponse(FixedResponse {
            status_code,
            content_type: None,
            message_body: String::new(),
        })
    }

    #[test]
    fn conditions_all_match_each_by_any_value_and_the_lowest_priority_wins() {
        let mut allowed = rule(10, RuleAction::Forward);
        allowed.path_pattern = vec![Pattern::new("/export/*", false)];
        allowed.source_ip = vec![
            "127.0.0.2/32".parse::<IpNet>().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let mut denied = rule(20, fixed(403));
        denied.path_pattern = vec![Pattern::new("/export/*", false)];
        let rules = [allowed, denied];
        let action = |f: &RequestFacts<'_>| first_match(&rules, f).cloned();
        assert_eq!(
            action(&facts("GET", "a", "/export/x", "127.0.0.2")),
            Some(RuleAction::Forward)
        );
        assert_eq!(
            action(&facts("GET", "a", "/export/x", "2001:db8::7")),
            Some(RuleAction::Forward)
        );
        assert_eq!(
            action(&facts("GET", "a", "/export/x", "127.0.0.3")),
            Some(fixed(403))
        );
        assert_eq!(action(&facts("GET", "a", "/other", "127.0.0.3")), None);
    }

    #[test]
    fn host_and_method_conditions() {
        let mut apex = rule(1, fixed(404));
        apex.host_header = vec![Pattern::new("example.com", true)];
        apex.http_request_method = vec!["POST".into(), "PUT".into()];
        let rules = [apex];
        assert!(first_match(&rules, &facts("POST", "EXAMPLE.com", "/", "127.0.0.1")).is_some());
        assert!(first_match(&rules, &facts("GET", "example.com", "/", "127.0.0.1")).is_none());
        assert!(first_match(&rules, &facts("PUT", "www.example.com", "/", "127.0.0.1")).is_none());
    }

    #[test]
    fn the_host_loses_its_port_and_ipv6_literals_keep_their_brackets() {
        assert_eq!(without_port("example.com:8080"), "example.com");
        assert_eq!(without_port("example.com"), "example.com");
        assert_eq!(without_port("[::1]:80"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
    }

    #[test]
    fn a_redirect_keeps_the_requests_parts_unless_told_otherwise() {
        let metrics = crate::observability::metrics::Metrics::new();
        let context = crate::data_plane::proxy::context::test_support::context(&metrics);
        let redirect = Redirect {
            protocol: Some(RedirectProtocol::Https),
            host: Some(Template::new("www.#{host}", &["host"]).unwrap()),
            port: Some(8443),
            path: Some(Template::new("/new/#{path}", &["host", "path", "port"]).unwrap()),
            query: None,
            status_code: 301,
        };
        let mut f = facts("GET", "example.com", "/a/b", "127.0.0.1");
        f.query = "x=1";
        let response = redirect_response(&redirect, &f, &context);
        assert_eq!(response.status(), 301);
        assert_eq!(
            response.headers()[LOCATION],
            "https://www.example.com:8443/new/a/b?x=1"
        );
        let only_host = Redirect {
            protocol: None,
            host: Some(Template::new("www.example.com", &["host"]).unwrap()),
            port: None,
            path: None,
            query: None,
            status_code: 302,
        };
        f.query = "";
        let response = redirect_response(&only_host, &f, &context);
        // The test context is an HTTPS listener on port 443.
        assert_eq!(
            response.headers()[LOCATION],
            "https://www.example.com:443/a/b"
        );
        assert_eq!(
            response.extensions().get::<RuleAnswer>(),
            Some(&RuleAnswer::Redirect)
        );
    }
}
