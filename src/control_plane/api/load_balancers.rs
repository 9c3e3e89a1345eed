//! DescribeLoadBalancers and DescribeLoadBalancerAttributes: the file's load balancers as ELB describes them
//! (ELB-SPEC §13.3 `LoadBalancerDescription`, and the attributes of §3 and §5).
//!
//! Rule: every member ELB-SPEC lists is written, EC2-Classic style (no subnets or VPC, `SourceSecurityGroup`
//! `amazon-elb`/`amazon-elb-sg`, scheme `internet-facing`); `CanonicalHostedZoneName` is the DNS name. A name
//! asked for that does not exist is `LoadBalancerNotFound` in DescribeLoadBalancers' own wording. Pages hold
//! `PageSize` load balancers; `NextMarker` is the name the next page starts at, and the last page has none
//! (the CLI's paginator stops on its absence).
//!
//! Trade-off: a listener on port 0 (any free port) is described with the port it bound, so the description is
//! one a client can connect to; `CreatedTime` of a file's load balancer is when elbe started serving it; an HTTPS
//! listener's `SSLCertificateId` is its `[api] certificates` id, or its certificate's path when the file gave
//! one that has no id.
//! Durations below a second (tests' health checks) are rounded up to whole seconds, the API's unit.

use std::time::{Duration, SystemTime};

use super::action::DescribeLoadBalancers;
use super::attributes::whole_seconds;
use super::error::ApiError;
use super::timestamp::iso8601;
use super::xml::Xml;
use crate::config::{self, PolicyKind};
use crate::control_plane::control::status::LoadBalancerStatus;
use crate::control_plane::store::definitions::LoadBalancerState;
use crate::control_plane::store::{Key, Record, Records};

/// Where a description's `CreatedTime`, `Scheme` and `SSLCertificateId` come from: the load balancer's record
/// for one created through the API, elbe's start for the file's; `[api] certificates` for the ids.
pub(crate) struct Origins<'a> {
    pub records: &'a Records,
    pub started: SystemTime,
    pub certificates: &'a [config::ApiCertificate],
}

impl Origins<'_> {
    /// (`CreatedTime`, `Scheme`) of `name`.
    fn created(&self, name: &str) -> (SystemTime, &str) {
        let key = Key::LoadBalancer {
            name: name.to_owned(),
        };
        match self.records.get(&key).map(|versioned| &versioned.record) {
            Some(Record::LoadBalancer(record)) => match &record.state {
                LoadBalancerState::Created { created_ms, scheme } => (
                    SystemTime::UNIX_EPOCH + Duration::from_millis(*created_ms),
                    scheme.as_str(),
                ),
                LoadBalancerState::Deleted => (self.started, "internet-facing"),
            },
            _ => (self.started, "internet-facing"),
        }
    }

    /// The `SSLCertificateId` of a listener's certificate: its `[api] certificates` id, else its path.
    fn certificate_id(&self, certificate: &config::CertificatePaths) -> String {
        self.certificates
            .iter()
            .find(|c| c.paths == *certificate)
            .map_or_else(|| certificate.cert.display().to_string(), |c| c.id.clone())
    }
}

/// A load balancer as the API sees it: its configuration and its live status, read together.
pub(crate) type Described = (config::LoadBalancer, LoadBalancerStatus);

/// The `DescribeLoadBalancersResult` members: one page of descriptions and the marker of the next.
pub(crate) fn describe(
    all: &[Described],
    request: &DescribeLoadBalancers,
    origins: &Origins<'_>,
    xml: &mut Xml,
) -> Result<(), ApiError> {
    let mut chosen: Vec<&Described> = Vec::new();
    if request.names.is_empty() {
        chosen.extend(all.iter());
    } else {
        for name in &request.names {
            let found = all
                .iter()
                .find(|(lb, _)| lb.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| ApiError::cannot_find_load_balancer(name))?;
            chosen.push(found);
        }
    }
    let start = match &request.marker {
        None => 0,
        Some(marker) => chosen
            .iter()
            .position(|(lb, _)| lb.name == *marker)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "Invalid Marker '{marker}': it names no load balancer"
                ))
            })?,
    };
    let end = (start + request.page_size).min(chosen.len());
    let page = &chosen[start..end];
    xml.list("LoadBalancerDescriptions", page, |xml, (lb, status)| {
        description(xml, lb, status, origins);
    });
    if let Some((next, _)) = chosen.get(end) {
        xml.text("NextMarker", &next.name);
    }
    Ok(())
}

/// One `LoadBalancerDescription`.
fn description(
    xml: &mut Xml,
    lb: &config::LoadBalancer,
    status: &LoadBalancerStatus,
    origins: &Origins<'_>,
) {
    let (created, scheme) = origins.created(&lb.name);
    xml.text("LoadBalancerName", &lb.name);
    xml.text("DNSName", &status.dns_name);
    xml.text("CanonicalHostedZoneName", &status.dns_name);
    xml.text("CanonicalHostedZoneNameID", hosted_zone_id(&lb.region));
    let listeners: Vec<(usize, &config::Listener)> = lb.listeners.iter().enumerate().collect();
    xml.list(
        "ListenerDescriptions",
        &listeners,
        |xml, (index, listener)| {
            xml.element("Listener", |xml| {
                xml.text("Protocol", listener.protocol);
                xml.text("LoadBalancerPort", port(listener, *index, status));
                xml.text("InstanceProtocol", listener.instance_protocol);
                xml.text("InstancePort", listener.instance_port);
                if let Some(certificate) = listener.certificates.first() {
                    xml.text("SSLCertificateId", origins.certificate_id(certificate));
                }
            });
            xml.strings("PolicyNames", &listener.policy_names);
        },
    );
    policies(xml, &lb.policies);
    xml.list(
        "BackendServerDescriptions",
        &lb.backend_servers,
        |xml, server| {
            xml.text("InstancePort", server.instance_port);
            xml.strings("PolicyNames", &server.policy_names);
        },
    );
    let zones: Vec<String> = lb
        .availability_zones
        .iter()
        .map(|z| z.name.clone())
        .collect();
    xml.strings("AvailabilityZones", &zones);
    xml.strings("Subnets", &[]);
    xml.list("Instances", &registered(status), |xml, id| {
        xml.text("InstanceId", id)
    });
    health_check(xml, &lb.health_check);
    xml.element("SourceSecurityGroup", |xml| {
        xml.text("OwnerAlias", "amazon-elb");
        xml.text("GroupName", "amazon-elb-sg");
    });
    xml.strings("SecurityGroups", &[]);
    xml.text("CreatedTime", iso8601(created));
    xml.text("Scheme", scheme);
}

/// The instances registered now: those being drained after deregistration are on their way out.
pub(crate) fn registered(status: &LoadBalancerStatus) -> Vec<String> {
    status
        .instances
        .iter()
        .filter(|i| !is_draining(i.description))
        .map(|i| i.instance_id.clone())
        .collect()
}

/// Whether an instance's state is the drain after its deregistration (ELB-SPEC §2.2).
pub(crate) fn is_draining(description: &str) -> bool {
    description
        == crate::control_plane::control::InstanceHealth::DEREGISTRATION_IN_PROGRESS.description
}

/// The configured port, or (port 0) the one its first node bound.
fn port(listener: &config::Listener, index: usize, status: &LoadBalancerStatus) -> u16 {
    if listener.load_balancer_port != 0 {
        return listener.load_balancer_port;
    }
    status
        .nodes
        .iter()
        .filter_map(|node| node.listeners.get(index))
        .filter_map(|l| l.address.as_deref())
        .filter_map(|address| address.parse::<std::net::SocketAddr>().ok())
        .map(|address| address.port())
        .next()
        .unwrap_or(0)
}

/// `Policies`: the stickiness policies by kind, the rest (Proxy Protocol) as `OtherPolicies`.
fn policies(xml: &mut Xml, policies: &[config::Policy]) {
    xml.element("Policies", |xml| {
        let app: Vec<(&str, &str)> = policies
            .iter()
            .filter_map(|p| match &p.kind {
                PolicyKind::AppCookie { cookie_name } => {
                    Some((p.name.as_str(), cookie_name.as_str()))
                }
                _ => None,
            })
            .collect();
        xml.list(
            "AppCookieStickinessPolicies",
            &app,
            |xml, (name, cookie)| {
                xml.text("PolicyName", name);
                xml.text("CookieName", cookie);
            },
        );
        let lb: Vec<(&str, Option<Duration>)> = policies
            .iter()
            .filter_map(|p| match &p.kind {
                PolicyKind::LbCookie {
                    cookie_expiration_period,
                } => Some((p.name.as_str(), *cookie_expiration_period)),
                _ => None,
            })
            .collect();
        xml.list("LBCookieStickinessPolicies", &lb, |xml, (name, period)| {
            xml.text("PolicyName", name);
            if let Some(period) = period {
                xml.text("CookieExpirationPeriod", period.as_secs());
            }
        });
        let other: Vec<String> = policies
            .iter()
            .filter(|p| matches!(p.kind, PolicyKind::ProxyProtocol))
            .map(|p| p.name.clone())
            .collect();
        xml.strings("OtherPolicies", &other);
    });
}

fn health_check(xml: &mut Xml, check: &config::HealthCheck) {
    xml.element("HealthCheck", |xml| {
        xml.text("Target", &check.target);
        xml.text("Interval", whole_seconds(check.interval));
        xml.text("Timeout", whole_seconds(check.timeout));
        xml.text("UnhealthyThreshold", check.unhealthy_threshold);
        xml.text("HealthyThreshold", check.healthy_threshold);
    });
}

/// A hosted-zone id for the region: ELB has one per region (ELB-SPEC §4); elbe's is made from the region's name,
/// so it is stable and cannot be mistaken for a real one.
fn hosted_zone_id(region: &str) -> String {
    let letters: String = region
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    format!("ZELBE{letters}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds() {
        use super::super::attributes::whole_seconds;
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::from_millis(100)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(hosted_zone_id("local-1"), "ZELBELOCAL1");
    }
}
