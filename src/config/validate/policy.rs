//! A load balancer's `[[load_balancer.policy]]`s, the listeners' `policy_names`, the stickiness key, and the
//! top-level `state_dir`.
//!
//! Rule: ELB-SPEC §6. `LBCookieStickinessPolicyType` takes an optional `cookie_expiration_period` (ELB's
//! `CookieExpirationPeriod`, whole seconds: it becomes `MAX-AGE`); `AppCookieStickinessPolicyType` a required
//! `cookie_name`. Stickiness is for HTTP/HTTPS listeners only, and one listener has at most one stickiness policy
//! (ELB refused two). Policy names are unique in the load balancer, as ELB's `PolicyName` was.
//!
//! `ProxyProtocolPolicyType` (ELB-SPEC §7) takes `proxy_protocol = true` (ELB's `ProxyProtocol` attribute) and is
//! attached to instance ports by `[[load_balancer.backend_server]]`, never to a listener; each instance port has
//! at most one `backend_server` table.
//!
//! Trade-off: `proxy_protocol = false` is refused rather than read as "off": a policy that does nothing is a
//! mistake, and leaving the policy out says "off" already.

use std::path::PathBuf;

use crate::config::error::ConfigError;
use crate::config::model::{BackendServer, Listener};
use crate::config::names::is_cookie_name;
use crate::config::raw;
use crate::config::traffic::{Policy, PolicyKind};
use crate::config::validate::context::Cx;

/// The shortest stickiness key accepted: 16 bytes (128 bits) is the least an HMAC key should have.
const MIN_STICKINESS_KEY_BYTES: usize = 16;

impl Cx<'_> {
    /// `state_dir`, resolved against the file's folder; default `state` beside the file.
    pub(super) fn state_dir(&self, raw: Option<String>) -> Result<PathBuf, ConfigError> {
        match raw {
            Some(dir) if dir.trim().is_empty() => Err(self.err(
                "state_dir",
                "must not be empty (omit it for a folder \"state\" beside this file)",
            )),
            Some(dir) => Ok(self.base.join(dir)),
            None => Ok(self.base.join("state")),
        }
    }

    /// A configured stickiness key: long enough to be a key.
    pub(super) fn stickiness_key(
        &self,
        key: &str,
        raw: Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        match raw {
            Some(secret) if secret.len() < MIN_STICKINESS_KEY_BYTES => Err(self.err(
                format!("{key}.stickiness_key"),
                format!(
                    "must be at least {MIN_STICKINESS_KEY_BYTES} bytes (it authenticates AWSELB cookies), got {}",
                    secret.len()
                ),
            )),
            other => Ok(other),
        }
    }

    /// Every policy: a unique name and a type elbe implements, with that type's keys and no other's.
    pub(super) fn policies(
        &self,
        key: &str,
        raw: Vec<raw::Policy>,
    ) -> Result<Vec<Policy>, ConfigError> {
        let mut policies: Vec<Policy> = Vec::new();
        for (p, policy) in raw.into_iter().enumerate() {
            let pkey = format!("{key}.policy[{p}]");
            if policy.name.is_empty() || policy.name.len() > 255 {
                return Err(self.err(format!("{pkey}.name"), "must be 1-255 characters"));
            }
            if let Some(j) = policies.iter().position(|other| other.name == policy.name) {
                return Err(self.err(
                    format!("{pkey}.name"),
                    format!(
                        "policy name {:?} is already used by policy[{j}]",
                        policy.name
                    ),
                ));
            }
            let kind = self.policy_kind(&pkey, &policy)?;
            policies.push(Policy {
                name: policy.name,
                kind,
            });
        }
        Ok(policies)
    }

    fn policy_kind(&self, pkey: &str, policy: &raw::Policy) -> Result<PolicyKind, ConfigError> {
        let stray = |name: &str, applies: &str| {
            self.err(
                format!("{pkey}.{name}"),
                format!("applies only to {applies}, not to {}", policy.policy_type),
            )
        };
        if policy.proxy_protocol.is_some() && policy.policy_type != "ProxyProtocolPolicyType" {
            return Err(stray("proxy_protocol", "ProxyProtocolPolicyType"));
        }
        match policy.policy_type.as_str() {
            "LBCookieStickinessPolicyType" => {
                if policy.cookie_name.is_some() {
                    return Err(stray("cookie_name", "AppCookieStickinessPolicyType"));
                }
                let period = policy.cookie_expiration_period.map(|v| v.0);
                if let Some(period) = period {
                    if period.subsec_nanos() != 0 {
                        return Err(self.err(
                            format!("{pkey}.cookie_expiration_period"),
                            format!("must be whole seconds (it is the cookie's MAX-AGE), got {period:?}"),
                        ));
                    }
                }
                Ok(PolicyKind::LbCookie {
                    cookie_expiration_period: period,
                })
            }
            "AppCookieStickinessPolicyType" => {
                if policy.cookie_expiration_period.is_some() {
                    return Err(stray(
                        "cookie_expiration_period",
                        "LBCookieStickinessPolicyType (an application cookie's AWSELB lives as long as it does)",
                    ));
                }
                let Some(name) = &policy.cookie_name else {
                    return Err(self.err(
                        format!("{pkey}.cookie_name"),
                        "is required for AppCookieStickinessPolicyType: the application's cookie to follow",
                    ));
                };
                if !is_cookie_name(name) {
                    return Err(self.err(
                        format!("{pkey}.cookie_name"),
                        format!("{name:?} is not a cookie name (RFC 6265: letters, digits and !#$%&'*+-.^_`|~)"),
                    ));
                }
                Ok(PolicyKind::AppCookie {
                    cookie_name: name.clone(),
                })
            }
            "ProxyProtocolPolicyType" => {
                if policy.cookie_name.is_some() {
                    return Err(stray("cookie_name", "AppCookieStickinessPolicyType"));
                }
                if policy.cookie_expiration_period.is_some() {
                    return Err(stray(
                        "cookie_expiration_period",
                        "LBCookieStickinessPolicyType",
                    ));
                }
                match policy.proxy_protocol {
                    Some(true) => Ok(PolicyKind::ProxyProtocol),
                    _ => Err(self.err(
                        format!("{pkey}.proxy_protocol"),
                        "must be true for ProxyProtocolPolicyType (ELB's ProxyProtocol attribute; leave the \
                         policy out to send no PROXY line)",
                    )),
                }
            }
            other => Err(self.err(
                format!("{pkey}.type"),
                format!(
                    "unknown policy type {other:?}; known: LBCookieStickinessPolicyType, \
                     AppCookieStickinessPolicyType, ProxyProtocolPolicyType"
                ),
            )),
        }
    }

    /// Each listener's `policy_names`: known policies, stickiness only on HTTP/HTTPS, at most one of it.
    pub(super) fn check_policy_names(
        &self,
        key: &str,
        listeners: &[Listener],
        policies: &[Policy],
    ) -> Result<(), ConfigError> {
        for (l, listener) in listeners.iter().enumerate() {
            let mut sticky: Option<usize> = None;
            for (n, name) in listener.policy_names.iter().enumerate() {
                let nkey = format!("{key}.listener[{l}].policy_names[{n}]");
                let Some(policy) = policies.iter().find(|p| p.name == *name) else {
                    return Err(self.err(
                        nkey,
                        format!("there is no policy named {name:?} in this load balancer's [[load_balancer.policy]]"),
                    ));
                };
                if policy.kind == PolicyKind::ProxyProtocol {
                    return Err(self.err(
                        nkey,
                        format!(
                            "{name:?} is a ProxyProtocolPolicyType policy: attach it to the instance port with \
                             [[load_balancer.backend_server]] instance_port = {}, policy_names = [{name:?}]",
                            listener.instance_port
                        ),
                    ));
                }
                if !listener.protocol.is_http() {
                    return Err(self.err(
                        nkey,
                        format!(
                            "stickiness policy {name:?} needs an HTTP or HTTPS listener, not {}",
                            listener.protocol
                        ),
                    ));
                }
                if let Some(first) = sticky {
                    return Err(self.err(
                        nkey,
                        format!(
                            "a listener has at most one stickiness policy, and policy_names[{first}] is one"
                        ),
                    ));
                }
                sticky = Some(n);
            }
        }
        Ok(())
    }
}

impl Cx<'_> {
    /// Each `[[load_balancer.backend_server]]`: an instance port 1-65535 named once, known Proxy Protocol
    /// policies (ELB-SPEC §7: the only policies ELB attached to instance ports, with back-end authentication), and
    /// a `backend_ca` (`backend_ca`) only where a listener speaks HTTPS/SSL to the port.
    pub(super) fn backend_servers(
        &self,
        key: &str,
        raw: Vec<raw::BackendServer>,
        policies: &[Policy],
        listeners: &[Listener],
    ) -> Result<Vec<BackendServer>, ConfigError> {
        let mut servers: Vec<BackendServer> = Vec::new();
        for (b, server) in raw.into_iter().enumerate() {
            let bkey = format!("{key}.backend_server[{b}]");
            if server.instance_port == 0 {
                return Err(self.err(format!("{bkey}.instance_port"), "must be 1-65535"));
            }
            if let Some(j) = servers
                .iter()
                .position(|s| s.instance_port == server.instance_port)
            {
                return Err(self.err(
                    format!("{bkey}.instance_port"),
                    format!(
                        "instance_port {} already has its policies in backend_server[{j}]",
                        server.instance_port
                    ),
                ));
            }
            for (n, name) in server.policy_names.iter().enumerate() {
                let nkey = format!("{bkey}.policy_names[{n}]");
                match policies.iter().find(|p| p.name == *name) {
                    None => {
                        return Err(self.err(
                            nkey,
                            format!("there is no policy named {name:?} in this load balancer's [[load_balancer.policy]]"),
                        ))
                    }
                    Some(policy) if policy.kind != PolicyKind::ProxyProtocol => {
                        return Err(self.err(
                            nkey,
                            format!("{name:?} is a stickiness policy: attach it to a listener's policy_names"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let backend_ca = match server.backend_ca {
                Some(path) => {
                    Some(self.backend_ca(&bkey, server.instance_port, &path, listeners)?)
                }
                None => None,
            };
            servers.push(BackendServer {
                instance_port: server.instance_port,
                policy_names: server.policy_names,
                backend_ca,
            });
        }
        Ok(servers)
    }
}
