//! The records of a load balancer's own settings, as the ELB API writes them (the keys are in `store/record`).
//!
//! Rule: each record holds what its action set, in the API's units (whole seconds, `SSLCertificateId`s), not
//! the file's: the overlay (`store/overlay`) turns them into configuration. Attributes hold only those the API
//! set (`None`: the file's, or the default), so a reload that changes another attribute in the file still
//! applies it.
//!
//! Trade-off: a load balancer created through the API is several records written in one batch (the load
//! balancer, its zones, listeners, health check and tags), so each later action rewrites only its own.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::Protocol;

/// `load_balancers/{name}`: created through the API (the file's load balancer of that name, if any, is
/// replaced whole), or deleted (the file's is gone until `elbe state reset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadBalancerRecord {
    pub name: String,
    #[serde(flatten)]
    pub state: LoadBalancerState,
}

/// Whether the load balancer exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum LoadBalancerState {
    Created {
        /// `CreatedTime`, in milliseconds since the Unix epoch.
        created_ms: u64,
        /// `internet-facing` or `internal`: described, nothing else (every node listens where its pool says).
        scheme: String,
    },
    Deleted,
}

/// `zones/{load balancer}`: the enabled zones, in order, each with the address its node took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Zones {
    pub load_balancer: String,
    pub zones: Vec<ZoneNode>,
}

/// One enabled zone and its node's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ZoneNode {
    pub name: String,
    pub node: IpAddr,
}

/// `listeners/{load balancer}/{port}`: a listener created, or deleted, through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListenerRecord {
    pub load_balancer: String,
    pub load_balancer_port: u16,
    #[serde(flatten)]
    pub state: ListenerState,
}

/// A listener's definition, or its tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum ListenerState {
    Defined(ListenerDefinition),
    Deleted,
}

/// ELB's `Listener`, as CreateLoadBalancer(Listeners) takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListenerDefinition {
    pub protocol: Protocol,
    pub instance_protocol: Protocol,
    pub instance_port: u16,
    /// `SSLCertificateId`, one of `[api] certificates` (HTTPS and SSL listeners only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
}

/// `listener_policies/…` and `backend_policies/…`: the policy names attached to one port (replace-all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyNames {
    pub load_balancer: String,
    pub port: u16,
    pub policy_names: Vec<String>,
}

/// `health_checks/{load balancer}`: ELB's `HealthCheck`, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthCheckRecord {
    pub load_balancer: String,
    /// `Target`: `PROTOCOL:PORT[/path]`.
    pub target: String,
    pub interval: u32,
    pub timeout: u32,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

/// `attributes/{load balancer}`: the attributes ModifyLoadBalancerAttributes set; `None`: not set through the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attributes {
    pub load_balancer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_zone_load_balancing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_draining: Option<bool>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_draining_timeout: Option<u32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u32>,
}

/// `policies/{load balancer}/{name}`: a policy created, or deleted, through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    pub load_balancer: String,
    pub name: String,
    #[serde(flatten)]
    pub state: PolicyState,
}

/// A policy's type and attributes, or its tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum PolicyState {
    /// LBCookieStickinessPolicyType; `None`: a session cookie.
    LbCookie {
        cookie_expiration_period: Option<u64>,
    },
    /// AppCookieStickinessPolicyType.
    AppCookie {
        cookie_name: String,
    },
    /// ProxyProtocolPolicyType with `ProxyProtocol=true`.
    ProxyProtocol,
    Deleted,
}

/// `tags/{load balancer}`: every tag, in the order they were first added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tags {
    pub load_balancer: String,
    pub tags: Vec<Tag>,
}

/// One tag (`Value` may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tag {
    pub key: String,
    pub value: String,
}
