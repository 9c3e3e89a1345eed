//! Which action a call is, and its parameters as a typed request: one small decoder per action (ELB-SPEC §13.3).
//!
//! Rule: `Version` must be `2012-06-01`, the only version elbe speaks; an action that ELB has and elbe does not
//! answer yet is refused with `InvalidAction` saying so (the rest of DESIGN.md's list is issue 15's next
//! slices); any other name is ELB's own `InvalidAction`. Each decoder takes exactly the parameters its action
//! has, and whatever is left is refused by the caller ([`super::query::Params::finish`]).
//!
//! Trade-off: the requests are plain structs built by hand from [`Params`], not serde: the Query protocol's
//! `member.N` lists and flattened structs are not a serde data model, and a decoder is five lines.

use super::error::ApiError;
use super::query::Params;

/// The one API version elbe speaks (ELB-SPEC §13).
pub(crate) const VERSION: &str = "2012-06-01";

/// ELB's actions that elbe does not answer yet: refused with a message that says so (issue 15 stays open).
const NOT_YET: &[&str] = &[
    "CreateLoadBalancer",
    "DeleteLoadBalancer",
    "CreateLoadBalancerListeners",
    "DeleteLoadBalancerListeners",
    "ConfigureHealthCheck",
    "ModifyLoadBalancerAttributes",
    "EnableAvailabilityZonesForLoadBalancer",
    "DisableAvailabilityZonesForLoadBalancer",
    "CreateLBCookieStickinessPolicy",
    "CreateAppCookieStickinessPolicy",
    "CreateLoadBalancerPolicy",
    "DescribeLoadBalancerPolicies",
    "DescribeLoadBalancerPolicyTypes",
    "DeleteLoadBalancerPolicy",
    "SetLoadBalancerPoliciesOfListener",
    "SetLoadBalancerPoliciesForBackendServer",
    "SetLoadBalancerListenerSSLCertificate",
    "AttachLoadBalancerToSubnets",
    "DetachLoadBalancerFromSubnets",
    "ApplySecurityGroupsToLoadBalancer",
    "AddTags",
    "RemoveTags",
    "DescribeTags",
    "DescribeAccountLimits",
];

/// One API call, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// DescribeLoadBalancers.
    DescribeLoadBalancers(DescribeLoadBalancers),
    /// RegisterInstancesWithLoadBalancer.
    RegisterInstances(Instances),
    /// DeregisterInstancesFromLoadBalancer.
    DeregisterInstances(Instances),
    /// DescribeInstanceHealth (`instances` may be empty: every registered one).
    DescribeInstanceHealth(Instances),
    /// DescribeLoadBalancerAttributes.
    DescribeLoadBalancerAttributes {
        /// `LoadBalancerName`.
        load_balancer: String,
    },
}

impl Call {
    /// The action's name, as `{Action}Response` is named.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Call::DescribeLoadBalancers(_) => "DescribeLoadBalancers",
            Call::RegisterInstances(_) => "RegisterInstancesWithLoadBalancer",
            Call::DeregisterInstances(_) => "DeregisterInstancesFromLoadBalancer",
            Call::DescribeInstanceHealth(_) => "DescribeInstanceHealth",
            Call::DescribeLoadBalancerAttributes { .. } => "DescribeLoadBalancerAttributes",
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
    match action.as_str() {
        "DescribeLoadBalancers" => describe_load_balancers(params).map(Call::DescribeLoadBalancers),
        "RegisterInstancesWithLoadBalancer" => instances(params, true).map(Call::RegisterInstances),
        "DeregisterInstancesFromLoadBalancer" => {
            instances(params, true).map(Call::DeregisterInstances)
        }
        "DescribeInstanceHealth" => instances(params, false).map(Call::DescribeInstanceHealth),
        "DescribeLoadBalancerAttributes" => Ok(Call::DescribeLoadBalancerAttributes {
            load_balancer: params.required("LoadBalancerName")?,
        }),
        other if NOT_YET.contains(&other) => Err(ApiError::not_implemented(other)),
        other => Err(ApiError::invalid_action(other, &version)),
    }
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
        let error = call("Action=CreateLoadBalancer&Version=2012-06-01").unwrap_err();
        assert_eq!(error.code, "InvalidAction");
        assert!(
            error.message.contains("CreateLoadBalancer"),
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
