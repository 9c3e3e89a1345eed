//! A load balancer's `[[load_balancer.rule]]`s: the listener each belongs to, its priority, conditions and action.
//!
//! Rule: ALB's model and limits (DESIGN.md "Listener rules"). A rule names a listener by its configured
//! `load_balancer_port` (0 for the one listener on any free port), which must be an HTTP/HTTPS listener; priority is
//! 1–50000 and unique per listener; at least one condition, each a non-empty list; path patterns and host patterns
//! of ALB's characters and at most 128 of them; methods of `A-Z`, `_` and `-`; `source_ip` CIDRs without host bits.
//! A redirect has `status_code` `HTTP_301` or `HTTP_302` and changes at least one of protocol, host, port and path
//! (else it would loop), never HTTPS to HTTP; a fixed response has a 2XX, 4XX or 5XX status, one of ALB's content
//! types and at most 1024 bytes of body.
//!
//! Trade-off: a CIDR with host bits (`10.0.0.5/24`) is refused, not truncated: it is usually a typo for a /32 or for
//! the network, and guessing which would open or close the wrong door.

use crate::config::error::ConfigError;
use crate::config::model::Listener;
use crate::config::protocol::Protocol;
use crate::config::raw;
use crate::config::traffic::{
    FixedResponse, IpNet, Pattern, Redirect, RedirectProtocol, Rule, RuleAction, Template,
};
use crate::config::validate::context::Cx;

/// ALB's content types for fixed responses.
const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

impl Cx<'_> {
    /// Every rule, sorted by listener port and priority (the order they are tried in).
    pub(super) fn rules(
        &self,
        key: &str,
        raw: Vec<raw::Rule>,
        listeners: &[Listener],
    ) -> Result<Vec<Rule>, ConfigError> {
        let mut rules: Vec<(usize, Rule)> = Vec::new();
        for (r, rule) in raw.into_iter().enumerate() {
            let rkey = format!("{key}.rule[{r}]");
            let listener = self.rule_listener(&rkey, rule.load_balancer_port, listeners)?;
            if !(1..=50000).contains(&rule.priority) {
                return Err(self.err(format!("{rkey}.priority"), "must be 1-50000 (ALB's range)"));
            }
            if let Some((j, _)) = rules.iter().find(|(_, other)| {
                other.load_balancer_port == rule.load_balancer_port
                    && other.priority == rule.priority
            }) {
                return Err(self.err(
                    format!("{rkey}.priority"),
                    format!(
                        "priority {} is already used by rule[{j}] on the listener on port {}",
                        rule.priority, rule.load_balancer_port
                    ),
                ));
            }
            let rule = self.rule(&rkey, rule, listener)?;
            rules.push((r, rule));
        }
        let mut rules: Vec<Rule> = rules.into_iter().map(|(_, rule)| rule).collect();
        rules.sort_by_key(|rule| (rule.load_balancer_port, rule.priority));
        Ok(rules)
    }

    /// The one HTTP/HTTPS listener a rule's port names.
    fn rule_listener<'l>(
        &self,
        rkey: &str,
        port: u16,
        listeners: &'l [Listener],
    ) -> Result<&'l Listener, ConfigError> {
        let pkey = format!("{rkey}.load_balancer_port");
        let mut matching = listeners.iter().filter(|l| l.load_balancer_port == port);
        let Some(listener) = matching.next() else {
            return Err(self.err(
                pkey,
                format!("no listener of this load balancer has load_balancer_port {port}"),
            ));
        };
        if matching.next().is_some() {
            return Err(self.err(
                pkey,
                format!("several listeners have load_balancer_port {port} (any free port): give them distinct ports to put rules on one"),
            ));
        }
        if !listener.protocol.is_http() {
            return Err(self.err(
                pkey,
                format!(
                    "rules need an HTTP or HTTPS listener; the listener on port {port} is {}",
                    listener.protocol
                ),
            ));
        }
        Ok(listener)
    }

    fn rule(&self, rkey: &str, raw: raw::Rule, listener: &Listener) -> Result<Rule, ConfigError> {
        if raw.path_pattern.is_none()
            && raw.host_header.is_none()
            && raw.http_request_method.is_none()
            && raw.source_ip.is_none()
        {
            return Err(self.err(
                rkey.to_owned(),
                "a rule needs at least one condition (path_pattern, host_header, http_request_method, source_ip)",
            ));
        }
        // Each value with its own key path, for errors.
        let list = |name: &str, values: Option<Vec<String>>| -> Vec<(String, String)> {
            values
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("{rkey}.{name}[{i}]"), v))
                .collect()
        };
        for (name, values) in [
            ("path_pattern", &raw.path_pattern),
            ("host_header", &raw.host_header),
            ("http_request_method", &raw.http_request_method),
            ("source_ip", &raw.source_ip),
        ] {
            if values.as_ref().is_some_and(Vec::is_empty) {
                return Err(self.err(
                    format!("{rkey}.{name}"),
                    "must list at least one value (or be left out)",
                ));
            }
        }
        let mut path_pattern = Vec::new();
        for (vkey, text) in list("path_pattern", raw.path_pattern) {
            self.check_pattern(&vkey, &text, |b| b"_-.$/~\"'@:+&*?".contains(&b))?;
            path_pattern.push(Pattern::new(&text, false));
        }
        let mut host_header = Vec::new();
        for (vkey, text) in list("host_header", raw.host_header) {
            self.check_pattern(&vkey, &text, |b| b"-.*?".contains(&b))?;
            host_header.push(Pattern::new(&text, true));
        }
        let mut http_request_method = Vec::new();
        for (vkey, text) in list("http_request_method", raw.http_request_method) {
            let valid = !text.is_empty()
                && text.len() <= 40
                && text
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
            if !valid {
                return Err(self.err(vkey, format!("{text:?} is not a method: 1-40 of A-Z, '_' and '-' (methods are case-sensitive: GET, not get)")));
            }
            http_request_method.push(text);
        }
        let mut source_ip = Vec::new();
        for (vkey, text) in list("source_ip", raw.source_ip) {
            source_ip.push(self.cidr(&vkey, &text)?);
        }
        let action = self.action(&format!("{rkey}.action"), raw.action, listener)?;
        Ok(Rule {
            load_balancer_port: raw.load_balancer_port,
            priority: raw.priority,
            path_pattern,
            host_header,
            http_request_method,
            source_ip,
            action,
        })
    }

    /// A path or host pattern: 1-128 characters, letters, digits and the `extra` ones ALB allows.
    fn check_pattern(
        &self,
        vkey: &str,
        text: &str,
        extra: impl Fn(u8) -> bool,
    ) -> Result<(), ConfigError> {
        if text.is_empty() || text.len() > 128 {
            return Err(self.err(vkey.to_owned(), "a pattern is 1-128 characters"));
        }
        if let Some(bad) = text
            .bytes()
            .find(|&b| !b.is_ascii_alphanumeric() && !extra(b))
        {
            return Err(self.err(
                vkey.to_owned(),
                format!("{text:?} has {:?}, which a pattern may not contain (only '*' and '?' are wildcards)", bad as char),
            ));
        }
        Ok(())
    }

    /// A CIDR block, IPv4 or IPv6, without host bits.
    fn cidr(&self, vkey: &str, text: &str) -> Result<IpNet, ConfigError> {
        let net: IpNet = text.parse().map_err(|_| {
            self.err(vkey.to_owned(), format!("{text:?} is not a CIDR block (e.g. \"203.0.113.0/24\", \"2001:db8::/32\"; a single address is \"198.51.100.7/32\")"))
        })?;
        if net.trunc() != net {
            return Err(self.err(
                vkey.to_owned(),
                format!(
                    "{text:?} has host bits set: the network is {}, a single address is {}/{}",
                    net.trunc(),
                    net.addr(),
                    net.max_prefix_len()
                ),
            ));
        }
        Ok(net)
    }

    /// The action, with only its own type's keys.
    fn action(
        &self,
        akey: &str,
        raw: raw::RuleAction,
        listener: &Listener,
    ) -> Result<RuleAction, ConfigError> {
        let stray = |present: &[(&str, bool)], kind: &str| -> Result<(), ConfigError> {
            match present.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(self.err(
                    format!("{akey}.{name}"),
                    format!("does not apply to a {kind} action"),
                )),
                None => Ok(()),
            }
        };
        let redirect_keys = [
            ("protocol", raw.protocol.is_some()),
            ("host", raw.host.is_some()),
            ("port", raw.port.is_some()),
            ("path", raw.path.is_some()),
            ("query", raw.query.is_some()),
        ];
        let fixed_keys = [
            ("content_type", raw.content_type.is_some()),
            ("message_body", raw.message_body.is_some()),
        ];
        match raw.action_type.as_str() {
            "forward" => {
                stray(&redirect_keys, "forward")?;
                stray(&fixed_keys, "forward")?;
                stray(&[("status_code", raw.status_code.is_some())], "forward")?;
                Ok(RuleAction::Forward)
            }
            "redirect" => {
                stray(&fixed_keys, "redirect")?;
                self.redirect(akey, raw, listener).map(RuleAction::Redirect)
            }
            "fixed_response" => {
                stray(&redirect_keys, "fixed_response")?;
                self.fixed_response(akey, raw)
                    .map(RuleAction::FixedResponse)
            }
            other => Err(self.err(
                format!("{akey}.type"),
                format!("unknown action type {other:?}; known: forward, redirect, fixed_response"),
            )),
        }
    }

    fn redirect(
        &self,
        akey: &str,
        raw: raw::RuleAction,
        listener: &Listener,
    ) -> Result<Redirect, ConfigError> {
        let status_code = match raw.status_code.as_ref().map(|s| s.0.as_str()) {
            Some("HTTP_301") => 301,
            Some("HTTP_302") => 302,
            Some(other) => {
                return Err(self.err(
                    format!("{akey}.status_code"),
                    format!("{other:?} is not a redirect status: HTTP_301 or HTTP_302"),
                ))
            }
            None => {
                return Err(self.err(
                    format!("{akey}.status_code"),
                    "is required for a redirect: HTTP_301 or HTTP_302",
                ))
            }
        };
        let protocol = match raw.protocol.as_deref() {
            None | Some("#{protocol}") => None,
            Some("HTTP") => Some(RedirectProtocol::Http),
            Some("HTTPS") => Some(RedirectProtocol::Https),
            Some(other) => {
                return Err(self.err(
                    format!("{akey}.protocol"),
                    format!("{other:?} is not HTTP, HTTPS or #{{protocol}}"),
                ))
            }
        };
        if protocol == Some(RedirectProtocol::Http) && listener.protocol == Protocol::Https {
            return Err(self.err(
                format!("{akey}.protocol"),
                "an HTTPS listener may not redirect to HTTP (ALB's rule)",
            ));
        }
        let port = match raw.port.as_ref().map(|p| p.0.as_str()) {
            None | Some("#{port}") => None,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    return Err(self.err(
                        format!("{akey}.port"),
                        format!("{text:?} is not a port: 1-65535 or #{{port}}"),
                    ))
                }
            },
        };
        let template = |name: &str,
                        text: Option<String>,
                        allowed: &[&str]|
         -> Result<Option<Template>, ConfigError> {
            let Some(text) = text else { return Ok(None) };
            if text.is_empty() || text.len() > 128 {
                return Err(self.err(format!("{akey}.{name}"), "must be 1-128 characters"));
            }
            Template::new(&text, allowed)
                .map(Some)
                .map_err(|why| self.err(format!("{akey}.{name}"), why))
        };
        let host = template("host", raw.host, &["host"])?;
        let path = template("path", raw.path, &["host", "path", "port"])?;
        if path.as_ref().is_some_and(|p| !p.text.starts_with('/')) {
            return Err(self.err(format!("{akey}.path"), "must start with '/'"));
        }
        let query = match raw.query {
            // An empty query drops the request's; ALB allows it.
            Some(text) if text.is_empty() => {
                Some(Template::new("", &[]).map_err(|why| self.err(format!("{akey}.query"), why))?)
            }
            other => template(
                "query",
                other,
                &["protocol", "host", "port", "path", "query"],
            )?,
        };
        let unchanged =
            |t: &Option<Template>, same: &str| t.as_ref().is_none_or(|t| t.text == same);
        if protocol.is_none()
            && port.is_none()
            && unchanged(&host, "#{host}")
            && unchanged(&path, "/#{path}")
        {
            return Err(self.err(
                akey.to_owned(),
                "a redirect must change at least one of protocol, host, port and path, or it would loop",
            ));
        }
        Ok(Redirect {
            protocol,
            host,
            port,
            path,
            query,
            status_code,
        })
    }

    fn fixed_response(
        &self,
        akey: &str,
        raw: raw::RuleAction,
    ) -> Result<FixedResponse, ConfigError> {
        let skey = format!("{akey}.status_code");
        let Some(code) = raw.status_code else {
            return Err(self.err(
                skey,
                "is required for a fixed response: a 2XX, 4XX or 5XX status",
            ));
        };
        let status_code = match code.0.parse::<u16>() {
            Ok(code) if matches!(code / 100, 2 | 4 | 5) && code <= 599 => code,
            _ => {
                return Err(self.err(
                    skey,
                    format!("{:?} is not a 2XX, 4XX or 5XX status", code.0),
                ))
            }
        };
        if let Some(content_type) = &raw.content_type {
            if !CONTENT_TYPES.contains(&content_type.as_str()) {
                return Err(self.err(
                    format!("{akey}.content_type"),
                    format!(
                        "{content_type:?} is not one of ALB's: {}",
                        CONTENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        let message_body = raw.message_body.unwrap_or_default();
        if message_body.len() > 1024 {
            return Err(self.err(
                format!("{akey}.message_body"),
                format!(
                    "is {} bytes; a fixed response's body is at most 1024",
                    message_body.len()
                ),
            ));
        }
        Ok(FixedResponse {
            status_code,
            content_type: raw.content_type,
            message_body,
        })
    }
}
