//! Policies through the API (ELB-SPEC §6, §7, §13.3): the two stickiness types and Proxy Protocol, created,
//! described, deleted and attached to listeners and instance ports.
//!
//! Rule: CreateLBCookieStickinessPolicy (`CookieExpirationPeriod` in seconds, absent: a session cookie),
//! CreateAppCookieStickinessPolicy (`CookieName`, an RFC 6265 token) and CreateLoadBalancerPolicy of
//! `ProxyProtocolPolicyType` (`ProxyProtocol=true`) or either stickiness type (their attributes by name). The
//! same policy again is no change; another one of the name is `DuplicatePolicyName`; an unknown type is
//! `PolicyTypeNotFound`, and ELB's TLS and back-end authentication types are `InvalidConfigurationRequest`
//! (the file's `ssl_policy` and `backend_ca` do their jobs). SetLoadBalancerPoliciesOfListener replaces a
//! listener's policies: at most one stickiness policy, on an HTTP or HTTPS listener; SetLoadBalancer-
//! PoliciesForBackendServer replaces an instance port's, Proxy Protocol only (ELB-SPEC §7). A policy in use
//! cannot be deleted (`InvalidConfigurationRequest`); deleting one that does not exist is no error.
//!
//! Trade-off: DescribeLoadBalancerPolicies without a load balancer lists elbe's TLS security policies
//! (ELB's predefined `ELBSecurityPolicy-*`) by name only; their ciphers are in the TLS module's table.

use super::apply::View;
use super::error::ApiError;
use super::query::Params;
use super::xml::Xml;
use crate::config::{self, PolicyKind};
use crate::control_plane::store::definitions::{PolicyNames, PolicyRecord, PolicyState};
use crate::control_plane::store::{Change, Record};

/// One attribute of a policy type: (name, type, default).
type AttributeType = (&'static str, &'static str, &'static str);

/// The policy types elbe implements, with their attributes: (type, description, attributes).
const TYPES: &[(&str, &str, &[AttributeType])] = &[
    (
        "LBCookieStickinessPolicyType",
        "Stickiness policy with session lifetimes controlled by the lifetime of the browser (user-agent) or a specified expiration period. This policy can be associated only with HTTP/HTTPS listeners.",
        &[("CookieExpirationPeriod", "Long", "0")],
    ),
    (
        "AppCookieStickinessPolicyType",
        "Stickiness policy with session lifetimes controlled by the lifetime of the application-generated cookie. This policy can be associated only with HTTP/HTTPS listeners.",
        &[("CookieName", "String", "")],
    ),
    (
        "ProxyProtocolPolicyType",
        "Policy that controls whether to include the IP address and port of the originating request for TCP messages. This policy operates on TCP/SSL listeners only",
        &[("ProxyProtocol", "Boolean", "")],
    ),
];

/// A Create...Policy call: the load balancer, the policy's name and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatePolicy {
    pub load_balancer: String,
    pub name: String,
    pub kind: PolicyState,
}

/// SetLoadBalancerPoliciesOfListener / ForBackendServer: the port and the names (may be none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetPolicies {
    pub names: PolicyNames,
}

/// DescribeLoadBalancerPolicies: a load balancer (or none: the predefined ones) and names (none: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribePolicies {
    pub load_balancer: Option<String>,
    pub names: Vec<String>,
}

/// `LoadBalancerName` and `PolicyName`; a policy name is letters, digits and `-` (ELB's rule), at most 255.
fn named(params: &mut Params) -> Result<(String, String), ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let name = params.required("PolicyName")?;
    if name.len() > 255 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ApiError::validation(format!(
            "PolicyName {name:?}: policy names are 1 to 255 letters, digits and '-'"
        )));
    }
    Ok((load_balancer, name))
}

pub(crate) fn decode_lb_cookie(params: &mut Params) -> Result<CreatePolicy, ApiError> {
    let (load_balancer, name) = named(params)?;
    let period = params.optional("CookieExpirationPeriod");
    Ok(CreatePolicy {
        load_balancer,
        name,
        kind: lb_cookie(period.as_deref())?,
    })
}

pub(crate) fn decode_app_cookie(params: &mut Params) -> Result<CreatePolicy, ApiError> {
    let (load_balancer, name) = named(params)?;
    let cookie = params.required("CookieName")?;
    Ok(CreatePolicy {
        load_balancer,
        name,
        kind: app_cookie(&cookie)?,
    })
}

pub(crate) fn decode_policy(params: &mut Params) -> Result<CreatePolicy, ApiError> {
    let (load_balancer, name) = named(params)?;
    let policy_type = params.required("PolicyTypeName")?;
    let mut attributes: Vec<(String, String)> = Vec::new();
    for mut member in params.members("PolicyAttributes")? {
        let name = member.required("AttributeName")?;
        let value = member.optional("AttributeValue").unwrap_or_default();
        member.finish()?;
        attributes.push((name, value));
    }
    let mut attribute = |wanted: &str| {
        let at = attributes.iter().position(|(name, _)| name == wanted)?;
        Some(attributes.remove(at).1)
    };
    let kind = match policy_type.as_str() {
        "LBCookieStickinessPolicyType" => {
            lb_cookie(attribute("CookieExpirationPeriod").as_deref())?
        }
        "AppCookieStickinessPolicyType" => {
            let cookie = attribute("CookieName").ok_or_else(|| {
                ApiError::invalid_configuration(
                    "AppCookieStickinessPolicyType needs the attribute CookieName",
                )
            })?;
            app_cookie(&cookie)?
        }
        "ProxyProtocolPolicyType" => match attribute("ProxyProtocol").as_deref() {
            Some(value) if value.eq_ignore_ascii_case("true") => PolicyState::ProxyProtocol,
            _ => {
                return Err(ApiError::invalid_configuration(
                    "ProxyProtocolPolicyType needs the attribute ProxyProtocol=true",
                ))
            }
        },
        "SSLNegotiationPolicyType"
        | "BackendServerAuthenticationPolicyType"
        | "PublicKeyPolicyType" => {
            return Err(ApiError::invalid_configuration(format!(
                "elbe does not take {policy_type} through the API: a listener's ssl_policy and a \
                 backend_server's backend_ca in the configuration file do its job"
            )))
        }
        other => {
            return Err(ApiError::elb(
                "PolicyTypeNotFound",
                format!("One or more of the specified policy types do not exist: {other}"),
            ))
        }
    };
    if let Some((name, _)) = attributes.first() {
        return Err(ApiError::invalid_configuration(format!(
            "{policy_type} has no attribute {name}"
        )));
    }
    Ok(CreatePolicy {
        load_balancer,
        name,
        kind,
    })
}

fn lb_cookie(period: Option<&str>) -> Result<PolicyState, ApiError> {
    let cookie_expiration_period = match period {
        None | Some("") => None,
        Some(text) => Some(text.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            ApiError::validation(format!(
                "CookieExpirationPeriod {text:?} is not a whole number of seconds above 0"
            ))
        })?),
    };
    Ok(PolicyState::LbCookie {
        cookie_expiration_period,
    })
}

fn app_cookie(cookie: &str) -> Result<PolicyState, ApiError> {
    if !config::is_cookie_name(cookie) {
        return Err(ApiError::validation(format!(
            "CookieName {cookie:?} is not a cookie name"
        )));
    }
    Ok(PolicyState::AppCookie {
        cookie_name: cookie.to_owned(),
    })
}

pub(crate) fn decode_delete(params: &mut Params) -> Result<(String, String), ApiError> {
    named(params)
}

/// `LoadBalancerName`, the port parameter `port` (`LoadBalancerPort` or `InstancePort`) and `PolicyNames`.
pub(crate) fn decode_set(params: &mut Params, port: &str) -> Result<SetPolicies, ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let port = params
        .number(port, 1..=65535)?
        .ok_or_else(|| ApiError::missing_parameter(port))? as u16;
    let policy_names = params.strings("PolicyNames")?;
    Ok(SetPolicies {
        names: PolicyNames {
            load_balancer,
            port,
            policy_names,
        },
    })
}

pub(crate) fn decode_describe(params: &mut Params) -> Result<DescribePolicies, ApiError> {
    Ok(DescribePolicies {
        load_balancer: params
            .optional("LoadBalancerName")
            .filter(|n| !n.is_empty()),
        names: params.strings("PolicyNames")?,
    })
}

pub(crate) fn decode_describe_types(params: &mut Params) -> Result<Vec<String>, ApiError> {
    params.strings("PolicyTypeNames")
}

/// The configuration's policy kind of a record's state (`None`: a tombstone).
fn kind_of(state: &PolicyState) -> Option<PolicyKind> {
    crate::control_plane::store::overlay::policy_kind(state)
}

/// Create...Policy.
pub(crate) fn plan_create(
    view: &View<'_>,
    request: &CreatePolicy,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    if let Some(policy) = lb.policies.iter().find(|p| p.name == request.name) {
        if Some(&policy.kind) == kind_of(&request.kind).as_ref() {
            return Ok(Vec::new());
        }
        return Err(ApiError::elb(
            "DuplicatePolicyName",
            format!(
                "Policy {} already exists for load balancer {}",
                request.name, lb.name
            ),
        ));
    }
    Ok(vec![Change::Put(Record::Policy(PolicyRecord {
        load_balancer: lb.name.clone(),
        name: request.name.clone(),
        state: request.kind.clone(),
    }))])
}

/// DeleteLoadBalancerPolicy: a tombstone, unless the policy is in use.
pub(crate) fn plan_delete(
    view: &View<'_>,
    load_balancer: &str,
    name: &str,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(load_balancer)?;
    if !lb.policies.iter().any(|p| p.name == name) {
        return Ok(Vec::new());
    }
    let on_listener = lb
        .listeners
        .iter()
        .find(|l| l.policy_names.iter().any(|n| n == name));
    let on_backend = lb
        .backend_servers
        .iter()
        .find(|b| b.policy_names.iter().any(|n| n == name));
    if let Some(listener) = on_listener {
        return Err(in_use(
            name,
            &format!("the listener on port {}", listener.load_balancer_port),
        ));
    }
    if let Some(backend) = on_backend {
        return Err(in_use(
            name,
            &format!("instance port {}", backend.instance_port),
        ));
    }
    Ok(vec![Change::Put(Record::Policy(PolicyRecord {
        load_balancer: lb.name.clone(),
        name: name.to_owned(),
        state: PolicyState::Deleted,
    }))])
}

fn in_use(name: &str, by: &str) -> ApiError {
    ApiError::invalid_configuration(format!(
        "Policy {name} is in use by {by}: take it off first (SetLoadBalancerPolicies...)"
    ))
}

/// The policies `names` of `lb`, each one there (`PolicyNotFound` otherwise).
fn find_all<'a>(
    lb: &'a config::LoadBalancer,
    names: &[String],
) -> Result<Vec<&'a config::Policy>, ApiError> {
    names
        .iter()
        .map(|name| {
            lb.policies.iter().find(|p| p.name == *name).ok_or_else(|| {
                ApiError::elb(
                    "PolicyNotFound",
                    format!(
                        "There is no policy with name {name} for load balancer {}",
                        lb.name
                    ),
                )
            })
        })
        .collect()
}

/// SetLoadBalancerPoliciesOfListener.
pub(crate) fn plan_set_of_listener(
    view: &View<'_>,
    request: &SetPolicies,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.names.load_balancer)?;
    let port = request.names.port;
    let listener = lb
        .listeners
        .iter()
        .find(|l| l.load_balancer_port == port)
        .ok_or_else(|| {
            ApiError::elb(
                "ListenerNotFound",
                format!(
                    "There is no ACTIVE listener on port {port} of load balancer {}",
                    lb.name
                ),
            )
        })?;
    let policies = find_all(lb, &request.names.policy_names)?;
    let mut stickiness = 0;
    for policy in &policies {
        if matches!(policy.kind, PolicyKind::ProxyProtocol) {
            return Err(ApiError::invalid_configuration(format!(
                "{} is a ProxyProtocolPolicyType policy: attach it to an instance port (SetLoadBalancerPoliciesForBackendServer)",
                policy.name
            )));
        }
        stickiness += 1;
        if !listener.protocol.is_http() {
            return Err(ApiError::invalid_configuration(format!(
                "Stickiness policies apply to HTTP and HTTPS listeners only; the listener on port {port} is {}",
                listener.protocol
            )));
        }
    }
    if stickiness > 1 {
        return Err(ApiError::invalid_configuration(
            "A listener takes at most one stickiness policy",
        ));
    }
    if listener.policy_names == request.names.policy_names {
        return Ok(Vec::new());
    }
    let mut names = request.names.clone();
    names.load_balancer = lb.name.clone();
    Ok(vec![Change::Put(Record::ListenerPolicies(names))])
}

/// SetLoadBalancerPoliciesForBackendServer.
pub(crate) fn plan_set_for_backend(
    view: &View<'_>,
    request: &SetPolicies,
) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.names.load_balancer)?;
    for policy in find_all(lb, &request.names.policy_names)? {
        if !matches!(policy.kind, PolicyKind::ProxyProtocol) {
            return Err(ApiError::invalid_configuration(format!(
                "{} is a stickiness policy: attach it to a listener (SetLoadBalancerPoliciesOfListener)",
                policy.name
            )));
        }
    }
    let held = lb
        .backend_servers
        .iter()
        .find(|b| b.instance_port == request.names.port);
    if held.map_or(request.names.policy_names.is_empty(), |b| {
        b.policy_names == request.names.policy_names
    }) {
        return Ok(Vec::new());
    }
    let mut names = request.names.clone();
    names.load_balancer = lb.name.clone();
    Ok(vec![Change::Put(Record::BackendPolicies(names))])
}

/// `PolicyDescriptions`.
pub(crate) fn describe(
    lb: Option<&config::LoadBalancer>,
    request: &DescribePolicies,
    xml: &mut Xml,
) -> Result<(), ApiError> {
    let Some(lb) = lb else {
        let predefined: Vec<&str> = crate::data_plane::tls::policy::POLICIES
            .iter()
            .map(|p| p.name)
            .collect();
        for name in &request.names {
            if !predefined.contains(&name.as_str()) {
                return Err(ApiError::elb(
                    "PolicyNotFound",
                    format!("There is no predefined policy {name}"),
                ));
            }
        }
        let chosen: Vec<&str> = predefined
            .into_iter()
            .filter(|name| request.names.is_empty() || request.names.iter().any(|n| n == name))
            .collect();
        xml.list("PolicyDescriptions", &chosen, |xml, name| {
            xml.text("PolicyName", name);
            xml.text("PolicyTypeName", "SSLNegotiationPolicyType");
            xml.strings("PolicyAttributeDescriptions", &[]);
        });
        return Ok(());
    };
    let chosen = if request.names.is_empty() {
        lb.policies.iter().collect()
    } else {
        find_all(lb, &request.names)?
    };
    xml.list("PolicyDescriptions", &chosen, |xml, policy| {
        xml.text("PolicyName", &policy.name);
        let (type_name, attributes): (&str, Vec<(&str, String)>) = match &policy.kind {
            PolicyKind::LbCookie {
                cookie_expiration_period,
            } => (
                "LBCookieStickinessPolicyType",
                vec![(
                    "CookieExpirationPeriod",
                    cookie_expiration_period.map_or("0".to_owned(), |p| p.as_secs().to_string()),
                )],
            ),
            PolicyKind::AppCookie { cookie_name } => (
                "AppCookieStickinessPolicyType",
                vec![("CookieName", cookie_name.clone())],
            ),
            PolicyKind::ProxyProtocol => (
                "ProxyProtocolPolicyType",
                vec![("ProxyProtocol", "true".to_owned())],
            ),
        };
        xml.text("PolicyTypeName", type_name);
        xml.list(
            "PolicyAttributeDescriptions",
            &attributes,
            |xml, (name, value)| {
                xml.text("AttributeName", name);
                xml.text("AttributeValue", value);
            },
        );
    });
    Ok(())
}

/// `PolicyTypeDescriptions`: the types elbe implements, or those named (`PolicyTypeNotFound` otherwise).
pub(crate) fn describe_types(names: &[String], xml: &mut Xml) -> Result<(), ApiError> {
    for name in names {
        if !TYPES.iter().any(|(type_name, _, _)| type_name == name) {
            return Err(ApiError::elb(
                "PolicyTypeNotFound",
                format!("One or more of the specified policy types do not exist: {name}"),
            ));
        }
    }
    let chosen: Vec<_> = TYPES
        .iter()
        .filter(|(type_name, _, _)| names.is_empty() || names.iter().any(|n| n == type_name))
        .collect();
    xml.list(
        "PolicyTypeDescriptions",
        &chosen,
        |xml, (type_name, description, attributes)| {
            xml.text("PolicyTypeName", type_name);
            xml.text("Description", description);
            xml.list(
                "PolicyAttributeTypeDescriptions",
                attributes,
                |xml, (name, kind, default)| {
                    xml.text("AttributeName", name);
                    xml.text("AttributeType", kind);
                    xml.text("DefaultValue", default);
                    xml.text("Cardinality", "ONE");
                },
            );
        },
    );
    Ok(())
}
