//! Which action a call is, and its parameters as a typed request: one small decoder per action (ELB-SPEC §13.3).
//!
//! Rule: `Version` must be `2012-06-01`, the only version elbe speaks; an action that ELB has and elbe does not
//! answer (VPC subnets, security groups, account limits) is refused with `InvalidAction` saying so; any other
//! name is ELB's own `InvalidAction`. The decoders of the actions that change a load balancer are in the module
//! of what they change (`api/creation`, `api/listeners`, `api/zones`, ...). Each decoder takes exactly the parameters its action
//! has, and whatever is left is refused by the caller ([`super::query::Params::finish`]).
//!
//! Trade-off: the requests are plain structs built by hand from [`Params`], not serde: the Query protocol's
//! `member.N` lists and flattened structs are not a serde data model, and a decoder is five lines.

use super::attributes::{self, ModifyAttributes};
use super::creation::{self, CreateLoadBalancer};
use super::error::ApiError;
use super::health_check::{self, ConfigureHealthCheck};
use super::listeners::{self, CreateListeners, DeleteListeners};
use super::policies::{self, CreatePolicy, DescribePolicies, SetPolicies};
use super::query::Params;
use super::tags::{self, TagsRequest};
use super::zones::{self, ZonesRequest};

/// The one API version elbe speaks (ELB-SPEC §13).
pub(crate) const VERSION: &str = "2012-06-01";

/// ELB's actions that elbe does not answer: they are about VPCs, security groups and account limits, which an
/// EC2-Classic load balancer on one machine does not have, and a listener's certificate, which the file sets.
const NOT_YET: &[&str] = &[
    "SetLoadBalancerListenerSSLCertificate",
    "AttachLoadBalancerToSubnets",
    "DetachLoadBalancerFromSubnets",
    "ApplySecurityGroupsToLoadBalancer",
    "DescribeAccountLimits",
];

/// One API call, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    DescribeLoadBalancers(DescribeLoadBalancers),
    CreateLoadBalancer(CreateLoadBalancer),
    DeleteLoadBalancer {
        load_balancer: String,
    },
    CreateListeners(CreateListeners),
    DeleteListeners(DeleteListeners),
    RegisterInstances(Instances),
    DeregisterInstances(Instances),
    /// `instances` may be empty: every registered one.
    DescribeInstanceHealth(Instances),
    ConfigureHealthCheck(ConfigureHealthCheck),
    DescribeLoadBalancerAttributes {
        load_balancer: String,
    },
    ModifyLoadBalancerAttributes(ModifyAttributes),
    EnableZones(ZonesRequest),
    DisableZones(ZonesRequest),
    /// CreateLBCookieStickinessPolicy, CreateAppCookieStickinessPolicy and CreateLoadBalancerPolicy.
    CreatePolicy(&'static str, CreatePolicy),
    DescribePolicies(DescribePolicies),
    DescribePolicyTypes {
        names: Vec<String>,
    },
    DeletePolicy {
        load_balancer: String,
        name: String,
    },
    SetListenerPolicies(SetPolicies),
    SetBackendPolicies(SetPolicies),
    AddTags(TagsRequest),
    RemoveTags(TagsRequest),
    DescribeTags {
        load_balancers: Vec<String>,
    },
}

impl Call {
    /// The action's name, as `{Action}Response` is named.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Call::DescribeLoadBalancers(_) => "DescribeLoadBalancers",
            Call::CreateLoadBalancer(_) => "CreateLoadBalancer",
            Call::DeleteLoadBalancer { .. } => "DeleteLoadBalancer",
            Call::CreateListeners(_) => "CreateLoadBalancerListeners",
            Call::DeleteListeners(_) => "DeleteLoadBalancerListeners",
            Call::RegisterInstances(_) => "RegisterInstancesWithLoadBalancer",
            Call::DeregisterInstances(_) => "DeregisterInstancesFromLoadBalancer",
            Call::DescribeInstanceHealth(_) => "DescribeInstanceHealth",
            Call::ConfigureHealthCheck(_) => "ConfigureHealthCheck",
            Call::DescribeLoadBalancerAttributes { .. } => "DescribeLoadBalancerAttributes",
            Call::ModifyLoadBalancerAttributes(_) => "ModifyLoadBalancerAttributes",
            Call::EnableZones(_) => "EnableAvailabilityZonesForLoadBalancer",
            Call::DisableZones(_) => "DisableAvailabilityZonesForLoadBalancer",
            Call::CreatePolicy(action, _) => action,
            Call::DescribePolicies(_) => "DescribeLoadBalancerPolicies",
            Call::DescribePolicyTypes { .. } => "DescribeLoadBalancerPolicyTypes",
            Call::DeletePolicy { .. } => "DeleteLoadBalancerPolicy",
            Call::SetListenerPolicies(_) => "SetLoadBalancerPoliciesOfListener",
            Call::SetBackendPolicies(_) => "SetLoadBalancerPoliciesForBackendServer",
            Call::AddTags(_) => "AddTags",
            Call::RemoveTags(_) => "RemoveTags",
            Call::DescribeTags { .. } => "DescribeTags",
        }
    }
}

/// DescribeLoadBalancers' parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeLoadBalancers {
    /// `LoadBalancerNames.member.N`; empty: all.
    pub names: Vec<String>,
    /// `Marker`: where the previous page stopped (its `NextMarker`).
    pub marker: Option<String>,
    /// `PageSize`, 1–400 (default 400).
    pub page_size: usize,
}

/// A load balancer and instance ids (`Instances.member.N.InstanceId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instances {
    /// `LoadBalancerName`.
    pub load_balancer: String,
    /// The ids, in the order given.
    pub instances: Vec<String>,
}

/// Reads `Action` and `Version` and the action's parameters; what is left in `params` is for the caller to refuse.
pub(crate) fn decode(params: &mut Params) -> Result<Call, ApiError> {
    let action = params
        .optional("Action")
        .filter(|action| !action.is_empty())
        .ok_or_else(ApiError::missing_action)?;
    let version = params.required("Version")?;
    if version != VERSION {
        return Err(ApiError::invalid_action(&action, &version));
    }
    let call = match action.as_str() {
        "DescribeLoadBalancers" => Call::DescribeLoadBalancers(describe_load_balancers(params)?),
        "CreateLoadBalancer" => Call::CreateLoadBalancer(creation::decode_create(params)?),
        "DeleteLoadBalancer" => Call::DeleteLoadBalancer {
            load_balancer: params.required("LoadBalancerName")?,
        },
        "CreateLoadBalancerListeners" => Call::CreateListeners(listeners::decode_create(params)?),
        "DeleteLoadBalancerListeners" => Call::DeleteListeners(listeners::decode_delete(params)?),
        "RegisterInstancesWithLoadBalancer" => Call::RegisterInstances(instances(params, true)?),
        "DeregisterInstancesFromLoadBalancer" => {
            Call::DeregisterInstances(instances(params, true)?)
        }
        "DescribeInstanceHealth" => Call::DescribeInstanceHealth(instances(params, false)?),
        "ConfigureHealthCheck" => Call::ConfigureHealthCheck(health_check::decode(params)?),
        "DescribeLoadBalancerAttributes" => Call::DescribeLoadBalancerAttributes {
            load_balancer: params.required("LoadBalancerName")?,
        },
        "ModifyLoadBalancerAttributes" => {
            Call::ModifyLoadBalancerAttributes(attributes::decode_modify(params)?)
        }
        "EnableAvailabilityZonesForLoadBalancer" => Call::EnableZones(zones::decode(params)?),
        "DisableAvailabilityZonesForLoadBalancer" => Call::DisableZones(zones::decode(params)?),
        "CreateLBCookieStickinessPolicy" => Call::CreatePolicy(
            "CreateLBCookieStickinessPolicy",
            policies::decode_lb_cookie(params)?,
        ),
        "CreateAppCookieStickinessPolicy" => Call::CreatePolicy(
            "CreateAppCookieStickinessPolicy",
            policies::decode_app_cookie(params)?,
        ),
        "CreateLoadBalancerPolicy" => {
            Call::CreatePolicy("CreateLoadBalancerPolicy", policies::decode_policy(params)?)
        }
        "DescribeLoadBalancerPolicies" => {
            Call::DescribePolicies(policies::decode_describe(params)?)
        }
        "DescribeLoadBalancerPolicyTypes" => Call::DescribePolicyTypes {
            names: policies::decode_describe_types(params)?,
        },
        "DeleteLoadBalancerPolicy" => {
            let (load_balancer, name) = policies::decode_delete(params)?;
            Call::DeletePolicy {
                load_balancer,
                name,
            }
        }
        "SetLoadBalancerPoliciesOfListener" => {
            Call::SetListenerPolicies(policies::decode_set(params, "LoadBalancerPort")?)
        }
        "SetLoadBalancerPoliciesForBackendServer" => {
            Call::SetBackendPolicies(policies::decode_set(params, "InstancePort")?)
        }
        "AddTags" => Call::AddTags(tags::decode_request(params, false)?),
        "RemoveTags" => Call::RemoveTags(tags::decode_request(params, true)?),
        "DescribeTags" => Call::DescribeTags {
            load_balancers: tags::decode_describe(params)?,
        },
        other if NOT_YET.contains(&other) => return Err(ApiError::not_implemented(other)),
        other => return Err(ApiError::invalid_action(other, &version)),
    };
    Ok(call)
}

fn describe_load_balancers(params: &mut Params) -> Result<DescribeLoadBalancers, ApiError> {
    Ok(DescribeLoadBalancers {
        names: params.strings("LoadBalancerNames")?,
        marker: params.optional("Marker").filter(|m| !m.is_empty()),
        page_size: params.number("PageSize", 1..=400)?.unwrap_or(400) as usize,
    })
}

/// `LoadBalancerName` and `Instances.member.N.InstanceId`, the list `required` or not.
fn instances(params: &mut Params, required: bool) -> Result<Instances, ApiError> {
    let load_balancer = params.required("LoadBalancerName")?;
    let mut instances = Vec::new();
    for mut member in params.members("Instances")? {
        instances.push(member.required("InstanceId")?);
        member.finish()?;
    }
    if required && instances.is_empty() {
        return Err(ApiError::missing_parameter("Instances"));
    }
    Ok(Instances {
        load_balancer,
        instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(form: &str) -> Result<Call, ApiError> {
        let mut params = Params::from_form(form.as_bytes())?;
        let call = decode(&mut params)?;
        params.finish()?;
        Ok(call)
    }

    fn code(form: &str) -> &'static str {
        call(form).unwrap_err().code
    }

    #[test]
    fn each_action_decodes_into_its_request() {
        assert_eq!(
            call("Action=DescribeLoadBalancers&Version=2012-06-01&LoadBalancerNames.member.1=web&PageSize=2&Marker=m")
                .unwrap(),
            Call::DescribeLoadBalancers(DescribeLoadBalancers {
                names: vec!["web".into()],
                marker: Some("m".into()),
                page_size: 2,
            })
        );
        let registered = call(
            "Action=RegisterInstancesWithLoadBalancer&Version=2012-06-01&LoadBalancerName=web\
             &Instances.member.1.InstanceId=i-1&Instances.member.2.InstanceId=i-2",
        )
        .unwrap();
        assert_eq!(
            registered,
            Call::RegisterInstances(Instances {
                load_balancer: "web".into(),
                instances: vec!["i-1".into(), "i-2".into()],
            })
        );
        assert_eq!(registered.action(), "RegisterInstancesWithLoadBalancer");
        assert!(matches!(
            call("Action=DescribeInstanceHealth&Version=2012-06-01&LoadBalancerName=web").unwrap(),
            Call::DescribeInstanceHealth(Instances { instances, .. }) if instances.is_empty()
        ));
        assert!(matches!(
            call("Action=DescribeLoadBalancerAttributes&Version=2012-06-01&LoadBalancerName=web").unwrap(),
            Call::DescribeLoadBalancerAttributes { load_balancer } if load_balancer == "web"
        ));
    }

    #[test]
    fn protocol_mistakes_get_elbs_codes() {
        assert_eq!(code("Version=2012-06-01"), "MissingAction");
        assert_eq!(code("Action=DescribeLoadBalancers"), "MissingParameter");
        assert_eq!(
            code("Action=DescribeLoadBalancers&Version=2011-11-15"),
            "InvalidAction"
        );
        assert_eq!(
            code("Action=LaunchRocket&Version=2012-06-01"),
            "InvalidAction"
        );
        assert_eq!(
            code("Action=DescribeInstanceHealth&Version=2012-06-01"),
            "MissingParameter"
        );
        assert_eq!(
            code(
                "Action=RegisterInstancesWithLoadBalancer&Version=2012-06-01&LoadBalancerName=web"
            ),
            "MissingParameter"
        );
        assert_eq!(
            code("Action=DescribeLoadBalancers&Version=2012-06-01&Colour=red"),
            "ValidationError"
        );
        assert_eq!(
            code("Action=DescribeLoadBalancers&Version=2012-06-01&PageSize=401"),
            "ValidationError"
        );
        let error =
            call("Action=ApplySecurityGroupsToLoadBalancer&Version=2012-06-01").unwrap_err();
        assert_eq!(error.code, "InvalidAction");
        assert!(
            error.message.contains("ApplySecurityGroupsToLoadBalancer"),
            "{}",
            error.message
        );
        assert!(error.message.contains("not implement"), "{}", error.message);
        let error = call("Action=LaunchRocket&Version=2012-06-01").unwrap_err();
        assert_eq!(
            error.message,
            "Could not find operation LaunchRocket for version 2012-06-01"
        );
    }
}
