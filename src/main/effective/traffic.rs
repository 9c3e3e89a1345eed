//! `elbe check --print` for policies and listener rules: the serde mirrors of [`elbe::config::Policy`] and
//! [`elbe::config::Rule`], written with the file's own keys so the printed file validates to the same rules.

use serde::Serialize;

use elbe::config::{PolicyKind, RuleAction};

use super::duration;

#[derive(Serialize)]
pub(super) struct Policy {
    name: String,
    #[serde(rename = "type")]
    policy_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie_expiration_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_protocol: Option<bool>,
}

/// One `[[load_balancer.backend_server]]`.
#[derive(Serialize)]
pub(super) struct BackendServer {
    instance_port: u16,
    policy_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_ca: Option<std::path::PathBuf>,
}

pub(super) fn backend_server(server: &elbe::config::BackendServer) -> BackendServer {
    let elbe::config::BackendServer {
        instance_port,
        policy_names,
        backend_ca,
    } = server;
    BackendServer {
        instance_port: *instance_port,
        policy_names: policy_names.clone(),
        backend_ca: backend_ca.as_ref().map(|ca| ca.path.clone()),
    }
}

#[derive(Serialize)]
pub(super) struct Rule {
    load_balancer_port: u16,
    priority: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_pattern: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_header: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request_method: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_ip: Option<Vec<String>>,
    action: Action,
}

#[derive(Serialize, Default)]
struct Action {
    #[serde(rename = "type")]
    action_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_body: Option<String>,
}

pub(super) fn policy(policy: &elbe::config::Policy) -> Policy {
    let elbe::config::Policy { name, kind } = policy;
    match kind {
        PolicyKind::LbCookie {
            cookie_expiration_period,
        } => Policy {
            name: name.clone(),
            policy_type: "LBCookieStickinessPolicyType",
            cookie_expiration_period: cookie_expiration_period.map(duration),
            cookie_name: None,
            proxy_protocol: None,
        },
        PolicyKind::AppCookie { cookie_name } => Policy {
            name: name.clone(),
            policy_type: "AppCookieStickinessPolicyType",
            cookie_expiration_period: None,
            cookie_name: Some(cookie_name.clone()),
            proxy_protocol: None,
        },
        PolicyKind::ProxyProtocol => Policy {
            name: name.clone(),
            policy_type: "ProxyProtocolPolicyType",
            cookie_expiration_period: None,
            cookie_name: None,
            proxy_protocol: Some(true),
        },
    }
}

pub(super) fn rule(rule: &elbe::config::Rule) -> Rule {
    let elbe::config::Rule {
        load_balancer_port,
        priority,
        path_pattern,
        host_header,
        http_request_method,
        source_ip,
        action,
    } = rule;
    let texts = |values: Vec<String>| (!values.is_empty()).then_some(values);
    Rule {
        load_balancer_port: *load_balancer_port,
        priority: *priority,
        path_pattern: texts(path_pattern.iter().map(|p| p.text.clone()).collect()),
        host_header: texts(host_header.iter().map(|p| p.text.clone()).collect()),
        http_request_method: texts(http_request_method.clone()),
        source_ip: texts(source_ip.iter().map(ToString::to_string).collect()),
        action: self::action(action),
    }
}

fn action(action: &RuleAction) -> Action {
    match action {
        RuleAction::Forward => Action {
            action_type: "forward",
            ..Action::default()
        },
        RuleAction::Redirect(elbe::config::Redirect {
            protocol,
            host,
            port,
            path,
            query,
            status_code,
        }) => Action {
            action_type: "redirect",
            protocol: protocol.map(|p| p.as_str().to_owned()),
            host: host.as_ref().map(|t| t.text.clone()),
            port: port.map(|p| p.to_string()),
            path: path.as_ref().map(|t| t.text.clone()),
            query: query.as_ref().map(|t| t.text.clone()),
            status_code: Some(format!("HTTP_{status_code}")),
            ..Action::default()
        },
        RuleAction::FixedResponse(elbe::config::FixedResponse {
            status_code,
            content_type,
            message_body,
        }) => Action {
            action_type: "fixed_response",
            status_code: Some(status_code.to_string()),
            content_type: content_type.clone(),
            message_body: (!message_body.is_empty()).then(|| message_body.clone()),
            ..Action::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn policies_and_rules_are_printed_back_as_they_validate() {
        let text = r##"
[[load_balancer]]
name = "web"
stickiness_key = "sixteen bytes or more"
[[load_balancer.availability_zone]]
name = "a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 80
instance_protocol = "HTTP"
instance_port = 8080
policy_names = ["app"]
[[load_balancer.policy]]
name = "lb"
type = "LBCookieStickinessPolicyType"
cookie_expiration_period = "600s"
[[load_balancer.policy]]
name = "app"
type = "AppCookieStickinessPolicyType"
cookie_name = "JSESSIONID"
[[load_balancer.rule]]
load_balancer_port = 80
priority = 2
path_pattern = ["/export/*"]
source_ip = ["203.0.113.0/24", "2001:db8::/32"]
action = { type = "forward" }
[[load_balancer.rule]]
load_balancer_port = 80
priority = 3
http_request_method = ["DELETE"]
action = { type = "fixed_response", status_code = 403, content_type = "text/plain", message_body = "no" }
[[load_balancer.rule]]
load_balancer_port = 80
priority = 1
host_header = ["Example.com"]
action = { type = "redirect", protocol = "HTTPS", port = 443, path = "/new/#{path}", query = "#{query}&a=1", status_code = "HTTP_302" }
"##;
        let config = elbe::config::parse(text, Path::new("/etc/elbe/elbe.toml")).unwrap();
        let printed = super::super::render(&config).unwrap();
        let reparsed = elbe::config::parse(&printed, Path::new("/printed.toml"))
            .unwrap_or_else(|e| panic!("the printed configuration does not parse: {e}\n{printed}"));
        assert_eq!(reparsed, config, "{printed}");
        for line in [
            "type = \"AppCookieStickinessPolicyType\"",
            "cookie_expiration_period = \"10m\"",
            "policy_names = [\"app\"]",
            "state_dir = \"/etc/elbe/state\"",
        ] {
            assert!(printed.contains(line), "{line} missing from:\n{printed}");
        }
    }
}
