//! Sticky-session policies and listener rules, validated: what `[[load_balancer.policy]]` and
//! `[[load_balancer.rule]]` become (DESIGN.md "Policies" and "Listener rules").
//!
//! Rule: stickiness is ELB's (ELB-SPEC §6: `LBCookieStickinessPolicyType`, `AppCookieStickinessPolicyType`); rules
//! are ALB's model (priority, conditions `path_pattern`, `host_header`, `http_request_method`, `source_ip`; actions
//! `forward`, `redirect`, `fixed_response`), because ELB Classic had none and ALB's is the one its users know.
//!
//! Trade-off: the matchers are compiled here, while the file is read, so the request path never parses a pattern,
//! a CIDR or a redirect template; each keeps the text it came from, so `elbe check --print` writes it back
//! unchanged. Matching lives beside the compiled form ([`Pattern::matches`], [`Template::expand`]) because the
//! two are one algorithm.

use std::time::Duration;

pub use ipnet::IpNet;

/// One `[[load_balancer.policy]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// ELB's `PolicyName`: unique within the load balancer; listeners and backend servers attach the policy by it.
    pub name: String,
    /// ELB's `PolicyTypeName` and its attributes.
    pub kind: PolicyKind,
}

/// What a policy does; the ELB policy types elbe implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// `LBCookieStickinessPolicyType`: elbe's `AWSELB` cookie, `MAX-AGE` of this many whole seconds, or a
    /// session cookie when `None`.
    LbCookie {
        /// ELB's `CookieExpirationPeriod`; `None` makes a session cookie.
        cookie_expiration_period: Option<Duration>,
    },
    /// `AppCookieStickinessPolicyType`: `AWSELB` follows the application's cookie of this name.
    AppCookie {
        /// The application's cookie (ELB's `CookieName`), matched case-sensitively.
        cookie_name: String,
    },
    /// `ProxyProtocolPolicyType` with `ProxyProtocol=true` (ELB-SPEC §7): a PROXY v1 line starts each connection
    /// to the instance ports it is attached to (`[[load_balancer.backend_server]]`), on TCP/SSL listeners.
    ProxyProtocol,
}

/// One `[[load_balancer.rule]]`: when every condition given matches (each one by any of its values), the action
/// runs; rules are tried lowest priority first, and no match forwards as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which listener (as configured; 0 for a listener on any free port).
    pub load_balancer_port: u16,
    /// 1–50000, unique per listener (ALB's range).
    pub priority: u32,
    /// Case-sensitive, against the path without the query.
    pub path_pattern: Vec<Pattern>,
    /// Case-insensitive, against the Host (or HTTP/2 `:authority`) without its port.
    pub host_header: Vec<Pattern>,
    /// Exact, case-sensitive (`GET`, `POST`...).
    pub http_request_method: Vec<String>,
    /// The peer address elbe saw, never `X-Forwarded-For`.
    pub source_ip: Vec<IpNet>,
    /// What a request matching every condition gets.
    pub action: RuleAction,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// On to the instances, as if no rule matched (stops lower-priority rules from matching).
    Forward,
    /// Answer with a redirect to a URL built from the request's parts.
    Redirect(Redirect),
    /// Answer with a fixed status and body, without reaching an instance.
    FixedResponse(FixedResponse),
}

/// ALB's redirect: each part defaults to the request's own (`None`); at least one of protocol, host, port and
/// path differs, or the redirect would loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `HTTP` or `HTTPS`; `None` keeps the listener's (`#{protocol}`).
    pub protocol: Option<RedirectProtocol>,
    /// `None` keeps the request's host (`#{host}`).
    pub host: Option<Template>,
    /// `None` keeps the listener's port (`#{port}`).
    pub port: Option<u16>,
    /// Starts with `/`.
    pub path: Option<Template>,
    /// Without the `?`.
    pub query: Option<Template>,
    /// 301 or 302 (`HTTP_301`, `HTTP_302`).
    pub status_code: u16,
}

/// The scheme a [`Redirect`] sends the client to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectProtocol {
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

impl RedirectProtocol {
    /// As the file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectProtocol::Http => "HTTP",
            RedirectProtocol::Https => "HTTPS",
        }
    }
}

/// ALB's fixed response: a status, an optional content type and a body of at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    /// 2XX, 4XX or 5XX.
    pub status_code: u16,
    /// The `Content-Type` of the answer; `None` sends none.
    pub content_type: Option<String>,
    /// The body, at most 1024 bytes.
    pub message_body: String,
}

/// A path or host pattern: `*` matches any run of characters (none included), `?` exactly one, anything else
/// itself. Compiled into the literal pieces between stars, so a match is one pass with no allocation and no
/// backtracking beyond the pieces (a greedy leftmost search is exact when only `*` separates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// As written in the file.
    pub text: String,
    /// The pieces between stars (lower-cased when `ignore_case`); one piece when there is no star.
    pieces: Vec<Box<[u8]>>,
    starred: bool,
    ignore_case: bool,
}

impl Pattern {
    /// Compiles `text`; `ignore_case` for host names.
    pub fn new(text: &str, ignore_case: bool) -> Self {
        let folded = if ignore_case {
            text.to_ascii_lowercase()
        } else {
            text.to_owned()
        };
        Pattern {
            text: text.to_owned(),
            pieces: folded.split('*').map(|p| p.as_bytes().into()).collect(),
            starred: text.contains('*'),
            ignore_case,
        }
    }

    /// Whether `subject` matches the whole pattern.
    pub fn matches(&self, subject: &[u8]) -> bool {
        let pieces = &self.pieces[..];
        let Some((first, rest)) = pieces.split_first() else {
            return subject.is_empty();
        };
        if !self.starred {
            return subject.len() == first.len() && self.same(first, subject);
        }
        let Some((last, middle)) = rest.split_last() else {
            return false;
        };
        if subject.len() < first.len() + last.len()
            || !self.same(first, &subject[..first.len()])
            || !self.same(last, &subject[subject.len() - last.len()..])
        {
            return false;
        }
        let mut hay = &subject[first.len()..subject.len() - last.len()];
        for piece in middle {
            match self.find(piece, hay) {
                Some(at) => hay = &hay[at + piece.len()..],
                None => return false,
            }
        }
        true
    }

    /// `piece` against `bytes` of the same length, `?` matching any one byte.
    fn same(&self, piece: &[u8], bytes: &[u8]) -> bool {
        piece.len() == bytes.len()
            && piece.iter().zip(bytes).all(|(&p, &b)| {
                p == b'?' || p == b || (self.ignore_case && p == b.to_ascii_lowercase())
            })
    }

    /// Where `piece` first occurs in `hay`.
    fn find(&self, piece: &[u8], hay: &[u8]) -> Option<usize> {
        if piece.is_empty() {
            return Some(0);
        }
        (0..=hay.len().checked_sub(piece.len())?)
            .find(|&at| self.same(piece, &hay[at..at + piece.len()]))
    }
}

/// A redirect part with ALB's keywords (`#{protocol}`, `#{host}`, `#{port}`, `#{path}` without its leading `/`,
/// `#{query}`), split once into literal text and keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As written in the file.
    pub text: String,
    pieces: Vec<Piece>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text, copied as written.
    Text(String),
    /// `#{protocol}`: `HTTP` or `HTTPS`.
    Protocol,
    /// `#{host}`: the request's host, without its port.
    Host,
    /// `#{port}`: the listener's port.
    Port,
    /// `#{path}`: the request's path, without its leading `/`.
    Path,
    /// `#{query}`: the request's query, without the `?`.
    Query,
}

/// The request's own parts, which a [`Template`]'s keywords stand for.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `HTTP` or `HTTPS` (ALB writes the keyword upper-case; the URL's scheme is lower-cased when written).
    pub protocol: &'a str,
    /// The Host (or HTTP/2 `:authority`) without its port.
    pub host: &'a str,
    /// The listener's port.
    pub port: u16,
    /// Without the leading `/`.
    pub path: &'a str,
    /// Without the `?`; empty when there is none.
    pub query: &'a str,
}

impl Template {
    /// Splits `text` into pieces; an unknown keyword, or one not in `allowed`, is named in the error.
    pub fn new(text: &str, allowed: &[&str]) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("#{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("{text:?} opens a keyword with #{{ and never closes it"))?;
            let keyword = &after[..end];
            if !allowed.contains(&keyword) {
                let allowed: Vec<String> = allowed.iter().map(|k| format!("#{{{k}}}")).collect();
                return Err(format!(
                    "#{{{keyword}}} is not allowed here (allowed: {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
            pieces.push(match keyword {
                "protocol" => Piece::Protocol,
                "host" => Piece::Host,
                "port" => Piece::Port,
                "path" => Piece::Path,
                _ => Piece::Query,
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
        })
    }

    /// Writes the template for one request into `out`.
    pub fn expand(&self, parts: &RequestParts<'_>, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Protocol => out.push_str(parts.protocol),
                Piece::Host => out.push_str(parts.host),
                Piece::Port => {
                    use std::fmt::Write;
                    let _ = write!(out, "{}", parts.port);
                }
                Piece::Path => out.push_str(parts.path),
                Piece::Query => out.push_str(parts.query),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, subject: &str) -> bool {
        Pattern::new(pattern, false).matches(subject.as_bytes())
    }

    #[test]
    fn patterns_match_stars_question_marks_and_literals_exactly() {
        assert!(matches("/export/*", "/export/"));
        assert!(matches("/export/*", "/export/a/b.csv"));
        assert!(!matches("/export/*", "/export"));
        assert!(
            !matches("/export/*", "/Export/a"),
            "paths are case-sensitive"
        );
        assert!(matches("/img/*.png", "/img/a/b.png"));
        assert!(!matches("/img/*.png", "/img/a.png.txt"));
        assert!(matches("*", ""));
        assert!(matches("/a?c", "/abc"));
        assert!(!matches("/a?c", "/ac"));
        assert!(matches("/*/x/*/y", "/1/x/2/x/3/y"));
        assert!(!matches("/*/x/*/y", "/1/x/2/y/3"));
        assert!(matches("/health", "/health"));
        assert!(!matches("/health", "/healthz"));
        assert!(matches("*ab*ab*", "abab"));
        assert!(!matches("*ab*ab*", "aba"));
        assert!(
            !matches("ab*ba", "aba"),
            "first and last pieces must not overlap"
        );
    }

    #[test]
    fn host_patterns_ignore_case() {
        let host = Pattern::new("*.Example.com", true);
        assert!(host.matches(b"www.example.COM"));
        assert!(host.matches(b"a.b.example.com"));
        assert!(!host.matches(b"example.com"));
    }

    #[test]
    fn templates_expand_keywords_and_refuse_unknown_ones() {
        let parts = RequestParts {
            protocol: "HTTP",
            host: "example.com",
            port: 80,
            path: "a/b",
            query: "x=1",
        };
        let template = Template::new(
            "/new/#{path}?#{query}&p=#{port}",
            &["path", "query", "port"],
        )
        .unwrap();
        let mut out = String::new();
        template.expand(&parts, &mut out);
        assert_eq!(out, "/new/a/b?x=1&p=80");
        let refused = Template::new("#{path}.#{host}", &["host"]).unwrap_err();
        assert!(
            refused.contains("#{path} is not allowed here (allowed: #{host})"),
            "{refused}"
        );
        assert!(Template::new("#{host", &["host"])
            .unwrap_err()
            .contains("never closes"));
    }
}
