//! Policies, `policy_names`, the stickiness key, `state_dir` and listener rules: what is accepted, and each
//! refusal's key path and words.

use std::path::Path;
use std::time::Duration;

use super::{fails, listener, ok, with_lb, CERTS, MINIMAL};
use crate::config::{PolicyKind, RuleAction};

/// MINIMAL plus `tables` (policies, rules) after the listener, and `listener_keys` on the listener.
fn with(listener_keys: &str, tables: &str) -> String {
    format!("{}\n{listener_keys}\n{tables}", MINIMAL.trim_end())
}

const LB_POLICY: &str =
    "[[load_balancer.policy]]\nname = \"sticky\"\ntype = \"LBCookieStickinessPolicyType\"\ncookie_expiration_period = \"600s\"\n";

#[test]
fn policies_attach_by_name_and_default_to_a_session_cookie() {
    let config = ok(&with("policy_names = [\"sticky\"]", LB_POLICY));
    let lb = &config.load_balancers[0];
    assert_eq!(lb.listeners[0].policy_names, ["sticky"]);
    assert_eq!(
        lb.policies[0].kind,
        PolicyKind::LbCookie {
            cookie_expiration_period: Some(Duration::from_secs(600))
        }
    );
    let session = ok(&with(
        "",
        "[[load_balancer.policy]]\nname = \"s\"\ntype = \"LBCookieStickinessPolicyType\"\n",
    ));
    assert_eq!(
        session.load_balancers[0].policies[0].kind,
        PolicyKind::LbCookie {
            cookie_expiration_period: None
        }
    );
    assert_eq!(
        config.state_dir,
        Path::new("examples/state"),
        "default: beside the file"
    );
}

#[test]
fn policy_refusals_name_their_key() {
    let p = "[[load_balancer.policy]]\nname = \"p\"\n";
    fails(
        &with("", &format!("{p}type = \"Sticky\"\n")),
        "load_balancer[0].policy[0].type",
        "unknown policy type",
    );
    fails(
        &with("", &format!("{p}type = \"ProxyProtocolPolicyType\"\n")),
        "load_balancer[0].policy[0].proxy_protocol",
        "must be true",
    );
    fails(
        &with(
            "",
            &format!("{p}type = \"AppCookieStickinessPolicyType\"\n"),
        ),
        "load_balancer[0].policy[0].cookie_name",
        "is required",
    );
    fails(
        &with(
            "",
            &format!("{p}type = \"AppCookieStickinessPolicyType\"\ncookie_name = \"a b\"\n"),
        ),
        "load_balancer[0].policy[0].cookie_name",
        "is not a cookie name",
    );
    fails(
        &with(
            "",
            &format!("{p}type = \"LBCookieStickinessPolicyType\"\ncookie_name = \"JSESSIONID\"\n"),
        ),
        "load_balancer[0].policy[0].cookie_name",
        "applies only to AppCookieStickinessPolicyType",
    );
    fails(
        &with("", &format!("{p}type = \"LBCookieStickinessPolicyType\"\ncookie_expiration_period = \"1500ms\"\n")),
        "load_balancer[0].policy[0].cookie_expiration_period",
        "whole seconds",
    );
    fails(
        &with("", &format!("{LB_POLICY}{LB_POLICY}")),
        "load_balancer[0].policy[1].name",
        "already used by policy[0]",
    );
    fails(
        &with("policy_names = [\"nope\"]", LB_POLICY),
        "load_balancer[0].listener[0].policy_names[0]",
        "no policy named \"nope\"",
    );
    let two = format!("{LB_POLICY}[[load_balancer.policy]]\nname = \"other\"\ntype = \"LBCookieStickinessPolicyType\"\n");
    fails(
        &with("policy_names = [\"sticky\", \"other\"]", &two),
        "load_balancer[0].listener[0].policy_names[1]",
        "at most one stickiness policy",
    );
    fails(
        &with_lb("stickiness_key = \"short\""),
        "load_balancer[0].stickiness_key",
        "at least 16 bytes",
    );
}

/// A rule on the listener (port 8080) with `body` for conditions and action.
fn rule(body: &str) -> String {
    with(
        "",
        &format!("[[load_balancer.rule]]\nload_balancer_port = 8080\npriority = 10\n{body}\n"),
    )
}

#[test]
fn rules_compile_their_conditions_and_sort_by_priority() {
    let text = with(
        "",
        "[[load_balancer.rule]]\nload_balancer_port = 8080\npriority = 20\npath_pattern = [\"/x/*\"]\naction = { type = \"forward\" }\n\
         [[load_balancer.rule]]\nload_balancer_port = 8080\npriority = 5\nsource_ip = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n\
         host_header = [\"*.Example.com\"]\nhttp_request_method = [\"GET\"]\n\
         action = { type = \"fixed_response\", status_code = 403, content_type = \"text/plain\", message_body = \"no\" }\n",
    );
    let rules = ok(&text).load_balancers[0].rules.clone();
    assert_eq!(
        rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
        [5, 20]
    );
    assert!(rules[0].host_header[0].matches(b"a.example.COM"));
    assert!(rules[0].source_ip[1].contains(&"2001:db8::1".parse::<std::net::IpAddr>().unwrap()));
    assert!(matches!(&rules[0].action, RuleAction::FixedResponse(f) if f.status_code == 403));
    assert!(rules[1].path_pattern[0].matches(b"/x/y"));
}

#[test]
fn rule_refusals_name_their_key() {
    let forward = "action = { type = \"forward\" }";
    let path = "path_pattern = [\"/a\"]";
    fails(
        &rule(forward),
        "load_balancer[0].rule[0]",
        "at least one condition",
    );
    fails(
        &rule(&format!("path_pattern = []\n{forward}")),
        "load_balancer[0].rule[0].path_pattern",
        "at least one value",
    );
    fails(
        &rule(&format!("source_ip = [\"10.0.0.300/8\"]\n{forward}")),
        "load_balancer[0].rule[0].source_ip[0]",
        "is not a CIDR block",
    );
    fails(
        &rule(&format!("source_ip = [\"10.0.0.5/8\"]\n{forward}")),
        "load_balancer[0].rule[0].source_ip[0]",
        "host bits set: the network is 10.0.0.0/8",
    );
    fails(
        &rule(&format!("path_pattern = [\"/a b\"]\n{forward}")),
        "load_balancer[0].rule[0].path_pattern[0]",
        "may not contain",
    );
    fails(
        &rule(&format!("host_header = [\"a_b.com\"]\n{forward}")),
        "load_balancer[0].rule[0].host_header[0]",
        "may not contain",
    );
    fails(
        &rule(&format!("http_request_method = [\"get\"]\n{forward}")),
        "load_balancer[0].rule[0].http_request_method[0]",
        "case-sensitive",
    );
    fails(
        &rule(&format!("{path}\naction = {{ type = \"drop\" }}")),
        "load_balancer[0].rule[0].action.type",
        "unknown action type",
    );
    fails(
        &rule(&format!(
            "{path}\naction = {{ type = \"forward\", host = \"x\" }}"
        )),
        "load_balancer[0].rule[0].action.host",
        "does not apply to a forward action",
    );
    fails(
        &rule(&format!(
            "{path}\naction = {{ type = \"redirect\", host = \"x\" }}"
        )),
        "load_balancer[0].rule[0].action.status_code",
        "HTTP_301 or HTTP_302",
    );
    fails(
        &rule(&format!("{path}\naction = {{ type = \"redirect\", query = \"a=1\", status_code = \"HTTP_301\" }}")),
        "load_balancer[0].rule[0].action",
        "would loop",
    );
    fails(
        &rule(&format!("{path}\naction = {{ type = \"redirect\", host = \"#{{path}}\", status_code = \"HTTP_301\" }}")),
        "load_balancer[0].rule[0].action.host",
        "#{path} is not allowed here",
    );
    fails(
        &rule(&format!("{path}\naction = {{ type = \"redirect\", path = \"no-slash\", status_code = \"HTTP_301\" }}")),
        "load_balancer[0].rule[0].action.path",
        "must start with '/'",
    );
    fails(
        &rule(&format!(
            "{path}\naction = {{ type = \"fixed_response\", status_code = 302 }}"
        )),
        "load_balancer[0].rule[0].action.status_code",
        "2XX, 4XX or 5XX",
    );
    fails(
        &rule(&format!("{path}\naction = {{ type = \"fixed_response\", status_code = 200, content_type = \"image/png\" }}")),
        "load_balancer[0].rule[0].action.content_type",
        "is not one of ALB's",
    );
    let twice = with(
        "",
        "[[load_balancer.rule]]\nload_balancer_port = 8080\npriority = 1\npath_pattern = [\"/a\"]\naction = { type = \"forward\" }\n\
         [[load_balancer.rule]]\nload_balancer_port = 8080\npriority = 1\npath_pattern = [\"/b\"]\naction = { type = \"forward\" }\n",
    );
    fails(
        &twice,
        "load_balancer[0].rule[1].priority",
        "already used by rule[0]",
    );
    let elsewhere = with("", "[[load_balancer.rule]]\nload_balancer_port = 9999\npriority = 1\npath_pattern = [\"/a\"]\naction = { type = \"forward\" }\n");
    fails(
        &elsewhere,
        "load_balancer[0].rule[0].load_balancer_port",
        "no listener of this load balancer has load_balancer_port 9999",
    );
}

const PP_POLICY: &str =
    "[[load_balancer.policy]]\nname = \"pp\"\ntype = \"ProxyProtocolPolicyType\"\nproxy_protocol = true\n";

#[test]
fn proxy_protocol_policies_attach_to_instance_ports() {
    let config = ok(&with(
        "",
        &format!("{PP_POLICY}[[load_balancer.backend_server]]\ninstance_port = 8000\npolicy_names = [\"pp\"]\n"),
    ));
    let lb = &config.load_balancers[0];
    assert_eq!(lb.policies[0].kind, PolicyKind::ProxyProtocol);
    assert_eq!(lb.backend_servers[0].instance_port, 8000);
    assert_eq!(lb.backend_servers[0].policy_names, ["pp"]);
}

#[test]
fn proxy_protocol_refusals_name_their_key() {
    fails(
        &with("policy_names = [\"pp\"]", PP_POLICY),
        "load_balancer[0].listener[0].policy_names[0]",
        "attach it to the instance port",
    );
    let server = |port: u16, names: &str| {
        format!(
            "[[load_balancer.backend_server]]\ninstance_port = {port}\npolicy_names = [{names}]\n"
        )
    };
    fails(
        &with("", &format!("{PP_POLICY}{}", server(8000, "\"nope\""))),
        "load_balancer[0].backend_server[0].policy_names[0]",
        "no policy named",
    );
    fails(
        &with("", &format!("{LB_POLICY}{}", server(8000, "\"sticky\""))),
        "load_balancer[0].backend_server[0].policy_names[0]",
        "stickiness policy",
    );
    fails(
        &with(
            "",
            &format!("{PP_POLICY}{}{}", server(8000, "\"pp\""), server(8000, "")),
        ),
        "load_balancer[0].backend_server[1].instance_port",
        "already has its policies",
    );
    fails(
        &with("", &format!("{PP_POLICY}{}", server(0, ""))),
        "load_balancer[0].backend_server[0].instance_port",
        "1-65535",
    );
}

#[test]
fn every_listener_protocol_may_accept_proxy_protocol() {
    let http = ok(&with("accept_proxy_protocol = true", ""));
    assert!(http.load_balancers[0].listeners[0].accept_proxy_protocol);
    for (protocol, instance, certificates) in [
        ("HTTPS", "HTTP", CERTS),
        ("SSL", "TCP", CERTS),
        ("TCP", "TCP", ""),
    ] {
        let extra = format!("{certificates}\naccept_proxy_protocol = true");
        let config = ok(&format!(
            "{MINIMAL}{}",
            listener(protocol, 443, instance, 9000, &extra)
        ));
        let listeners = &config.load_balancers[0].listeners;
        assert!(!listeners[0].accept_proxy_protocol, "off unless asked");
        assert!(listeners[1].accept_proxy_protocol, "{protocol}");
    }
}
