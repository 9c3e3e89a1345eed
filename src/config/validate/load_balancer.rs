//! One `[[load_balancer]]`: its name and region, access log, connection draining, availability zones and
//! registered instances, with its listeners and health check delegated to their own modules.
//!
//! Rule: ELB-SPEC §4 for the name (it becomes a DNS name, so the region must be one DNS label too); at least one
//! availability zone with a unique name and a node address (§3); instance ids unique within the load balancer.
//! An instance may name a zone that is not enabled: ELB accepted that and reported the instance OutOfService
//! (§2.2), so refusing it here would make a valid ELB setup unloadable.
//!
//! Trade-off: duplicates are found by scanning what was already accepted, quadratic in the number of zones or
//! instances. Files hold a handful of each, and the scan can name the earlier entry (`instance[0]`) in the error.

use crate::config::defaults;
use crate::config::error::ConfigError;
use crate::config::model::{
    AccessLogDestination, AvailabilityZone, ConnectionDraining, Instance, LoadBalancer,
};
use crate::config::names::{check_label, check_load_balancer_name, is_dns_label};
use crate::config::raw;
use crate::config::validate::context::Cx;

impl Cx<'_> {
    /// The parts are checked in the order the file's tables come, so the first mistake is the one reported.
    pub(super) fn load_balancer(
        &self,
        key: &str,
        raw: raw::LoadBalancer,
    ) -> Result<LoadBalancer, ConfigError> {
        check_load_balancer_name(&raw.name).map_err(|why| self.err(format!("{key}.name"), why))?;
        let region = self.region(key, raw.region)?;
        let access_log = self.access_log(key, raw.access_log)?;
        let connection_draining = connection_draining(raw.connection_draining);
        let availability_zones = self.availability_zones(key, raw.availability_zone)?;
        let listeners = self.listeners(key, raw.listener)?;
        // ELB's default health check probes the first listener's instance port over TCP (ELB-SPEC §2.1).
        let default_port = listeners.first().map_or(80, |l| l.instance_port);
        let health_check = self.health_check(
            &format!("{key}.health_check"),
            raw.health_check,
            default_port,
        )?;
        let instances = self.instances(key, raw.instance)?;
        let stickiness_key = self.stickiness_key(key, raw.stickiness_key)?;
        let policies = self.policies(key, raw.policy)?;
        self.check_policy_names(key, &listeners, &policies)?;
        let backend_servers =
            self.backend_servers(key, raw.backend_server, &policies, &listeners)?;
        let rules = self.rules(key, raw.rule, &listeners)?;
        Ok(LoadBalancer {
            name: raw.name,
            region,
            cross_zone_load_balancing: raw
                .cross_zone_load_balancing
                .unwrap_or(defaults::CROSS_ZONE_LOAD_BALANCING),
            idle_timeout: raw.idle_timeout.map_or(defaults::IDLE_TIMEOUT, |v| v.0),
            connection_draining,
            access_log,
            passive_health_checks: raw
                .passive_health_checks
                .unwrap_or(defaults::PASSIVE_HEALTH_CHECKS),
            availability_zones,
            listeners,
            health_check,
            instances,
            stickiness_key,
            policies,
            backend_servers,
            rules,
        })
    }

    /// The region is part of the load balancer's DNS name, so it must be one DNS label.
    fn region(&self, key: &str, raw: Option<String>) -> Result<String, ConfigError> {
        let region = raw.unwrap_or_else(|| defaults::REGION.to_owned());
        if !is_dns_label(&region) {
            return Err(self.err(
                format!("{key}.region"),
                format!("region {region:?} must be one DNS label (letters, digits and '-', at most 63 characters)"),
            ));
        }
        Ok(region)
    }

    /// ELB's `AccessLog` attribute (ELB-SPEC §11): off unless the table is there and not disabled; an enabled
    /// log needs a path, `-` for standard output or a file relative to the configuration file's folder.
    fn access_log(
        &self,
        key: &str,
        raw: Option<raw::AccessLog>,
    ) -> Result<Option<AccessLogDestination>, ConfigError> {
        match raw {
            None
            | Some(raw::AccessLog {
                enabled: Some(false),
                ..
            }) => Ok(None),
            Some(raw::AccessLog { path: None, .. }) => Err(self.err(
                format!("{key}.access_log.path"),
                "an enabled access log needs a path: a file, or \"-\" for standard output",
            )),
            Some(raw::AccessLog {
                path: Some(path), ..
            }) if path == "-" => Ok(Some(AccessLogDestination::Stdout)),
            Some(raw::AccessLog {
                path: Some(path), ..
            }) if path.trim().is_empty() => Err(self.err(
                format!("{key}.access_log.path"),
                "the path must not be empty",
            )),
            Some(raw::AccessLog {
                path: Some(path), ..
            }) => Ok(Some(AccessLogDestination::File(self.base.join(path)))),
        }
    }

    /// At least one zone, names unique, each node an IP address its listeners bind on.
    fn availability_zones(
        &self,
        key: &str,
        raw: Vec<raw::AvailabilityZone>,
    ) -> Result<Vec<AvailabilityZone>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err(
                format!("{key}.availability_zone"),
                "at least one availability zone is required ([[load_balancer.availability_zone]] with name and node)",
            ));
        }
        let mut availability_zones: Vec<AvailabilityZone> = Vec::new();
        for (z, zone) in raw.into_iter().enumerate() {
            let zkey = format!("{key}.availability_zone[{z}]");
            check_label(&zone.name).map_err(|why| self.err(format!("{zkey}.name"), why))?;
            if let Some(j) = availability_zones
                .iter()
                .position(|other| other.name == zone.name)
            {
                return Err(self.err(
                    format!("{zkey}.name"),
                    format!(
                        "zone {:?} is already listed as availability_zone[{j}]",
                        zone.name
                    ),
                ));
            }
            let node = self.parse(&format!("{zkey}.node"), &zone.node, |_| {
                format!("{:?} is not an IP address (the node binds its listeners on it, e.g. \"127.0.0.11\")", zone.node)
            })?;
            availability_zones.push(AvailabilityZone {
                name: zone.name,
                node,
            });
        }
        Ok(availability_zones)
    }

    /// The registered instances: may be none (they can be registered at run time); ids unique.
    fn instances(&self, key: &str, raw: Vec<raw::Instance>) -> Result<Vec<Instance>, ConfigError> {
        let mut instances: Vec<Instance> = Vec::new();
        for (n, instance) in raw.into_iter().enumerate() {
            let ikey = format!("{key}.instance[{n}]");
            check_label(&instance.id).map_err(|why| self.err(format!("{ikey}.id"), why))?;
            if let Some(j) = instances.iter().position(|other| other.id == instance.id) {
                return Err(self.err(
                    format!("{ikey}.id"),
                    format!(
                        "instance id {:?} is already used by instance[{j}]",
                        instance.id
                    ),
                ));
            }
            // A zone that is not enabled is allowed: the instance is then reported OutOfService (ELB-SPEC §2.2).
            check_label(&instance.zone).map_err(|why| self.err(format!("{ikey}.zone"), why))?;
            let address = self.value(&format!("{ikey}.address"), &instance.address)?;
            instances.push(Instance {
                id: instance.id,
                zone: instance.zone,
                address,
            });
        }
        Ok(instances)
    }
}

/// ELB's `ConnectionDraining` attribute (ELB-SPEC §5): each half defaults on its own.
fn connection_draining(raw: Option<raw::ConnectionDraining>) -> ConnectionDraining {
    ConnectionDraining {
        enabled: raw
            .as_ref()
            .and_then(|d| d.enabled)
            .unwrap_or(defaults::CONNECTION_DRAINING_ENABLED),
        timeout: raw
            .and_then(|d| d.timeout)
            .map_or(defaults::CONNECTION_DRAINING_TIMEOUT, |v| v.0),
    }
}
