//! `[api]` and `[[instance]]`: the ELB API on the admin listener and the EC2 stand-in it names instances from
//! (DESIGN.md "The ELB API (2012-06-01) on the admin listener").
//!
//! Rule: the access keys come as a pair or not at all (one alone would leave the API open while the operator
//! believes it is locked); the region is one DNS label, as load balancers' regions are; catalogue ids are unique,
//! because RegisterInstancesWithLoadBalancer names an instance by its id alone.
//!
//! `zones` name the zones CreateLoadBalancer and EnableAvailabilityZonesForLoadBalancer may enable, each with the
//! pool its nodes take addresses from: pools may not overlap, or two load balancers could be given one address.
//! `certificates` are what an `SSLCertificateId` names; each file must be readable now, as a listener's are.
//!
//! Trade-off: a pool is any CIDR; a /32 is one load balancer's worth of addresses in that zone.

use crate::config::defaults;
use crate::config::error::ConfigError;
use crate::config::model::{
    Api, ApiCertificate, ApiCredentials, ApiZone, CertificatePaths, Instance,
};
use crate::config::names::{check_label, is_dns_label};
use crate::config::raw;
use crate::config::validate::context::Cx;

impl Cx<'_> {
    /// `[api]`, with the default region when the table or the key is absent.
    pub(super) fn api(&self, raw: Option<raw::Api>) -> Result<Api, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Api::default());
        };
        let region = raw.region.unwrap_or_else(|| defaults::REGION.to_owned());
        if !is_dns_label(&region) {
            return Err(self.err(
                "api.region",
                format!("region {region:?} must be one DNS label (letters, digits and '-', at most 63 characters)"),
            ));
        }
        let credentials = match (raw.access_key_id, raw.secret_access_key) {
            (None, None) => None,
            (Some(access_key_id), Some(secret_access_key)) => {
                check_label(&access_key_id)
                    .map_err(|why| self.err("api.access_key_id", why))?;
                if secret_access_key.is_empty() {
                    return Err(self.err("api.secret_access_key", "must not be empty"));
                }
                Some(ApiCredentials {
                    access_key_id,
                    secret_access_key,
                })
            }
            (Some(_), None) => {
                return Err(self.err(
                    "api.secret_access_key",
                    "is required with access_key_id: give both keys (every call must then be signed) or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    "api.access_key_id",
                    "is required with secret_access_key: give both keys (every call must then be signed) or neither",
                ))
            }
        };
        Ok(Api {
            region,
            credentials,
            zones: self.api_zones(raw.zones)?,
            certificates: self.api_certificates(raw.certificates)?,
        })
    }

    /// `[api] zones`: names unique, pools parsed and disjoint.
    fn api_zones(&self, raw: Vec<raw::ApiZone>) -> Result<Vec<ApiZone>, ConfigError> {
        let mut zones: Vec<ApiZone> = Vec::with_capacity(raw.len());
        for (n, zone) in raw.into_iter().enumerate() {
            let key = format!("api.zones[{n}]");
            check_label(&zone.name).map_err(|why| self.err(format!("{key}.name"), why))?;
            let node_pool: ipnet::IpNet = zone.node_pool.parse().map_err(|_| {
                self.err(
                    format!("{key}.node_pool"),
                    format!(
                        "{:?} is not a CIDR block such as \"127.0.1.0/24\"",
                        zone.node_pool
                    ),
                )
            })?;
            for (j, other) in zones.iter().enumerate() {
                if other.name == zone.name {
                    return Err(self.err(
                        format!("{key}.name"),
                        format!("zone {:?} is already api.zones[{j}]", zone.name),
                    ));
                }
                if other.node_pool.contains(&node_pool.network())
                    || node_pool.contains(&other.node_pool.network())
                {
                    return Err(self.err(
                        format!("{key}.node_pool"),
                        format!("{node_pool} overlaps api.zones[{j}]'s {}", other.node_pool),
                    ));
                }
            }
            zones.push(ApiZone {
                name: zone.name,
                node_pool: node_pool.trunc(),
            });
        }
        Ok(zones)
    }

    /// `[api] certificates`: ids unique, files readable.
    fn api_certificates(
        &self,
        raw: Vec<raw::ApiCertificate>,
    ) -> Result<Vec<ApiCertificate>, ConfigError> {
        let mut certificates: Vec<ApiCertificate> = Vec::with_capacity(raw.len());
        for (n, certificate) in raw.into_iter().enumerate() {
            let key = format!("api.certificates[{n}]");
            check_label(&certificate.id).map_err(|why| self.err(format!("{key}.id"), why))?;
            if let Some(j) = certificates.iter().position(|c| c.id == certificate.id) {
                return Err(self.err(
                    format!("{key}.id"),
                    format!(
                        "certificate id {:?} is already api.certificates[{j}]",
                        certificate.id
                    ),
                ));
            }
            let paths = CertificatePaths {
                cert: self.base.join(&certificate.cert),
                key: self.base.join(&certificate.key),
            };
            for (name, path) in [("cert", &paths.cert), ("key", &paths.key)] {
                super::listener::check_readable(path).map_err(|why| {
                    self.err(
                        format!("{key}.{name}"),
                        format!("cannot read {}: {why}", path.display()),
                    )
                })?;
            }
            certificates.push(ApiCertificate {
                id: certificate.id,
                paths,
            });
        }
        Ok(certificates)
    }

    /// `[[instance]]`: ids unique across the catalogue; zones are labels (a zone no load balancer enables is
    /// allowed: the instance is then reported OutOfService, ELB-SPEC §2.2).
    pub(super) fn catalogue(&self, raw: Vec<raw::Instance>) -> Result<Vec<Instance>, ConfigError> {
        let mut instances: Vec<Instance> = Vec::with_capacity(raw.len());
        for (n, instance) in raw.into_iter().enumerate() {
            let key = format!("instance[{n}]");
            check_label(&instance.id).map_err(|why| self.err(format!("{key}.id"), why))?;
            if let Some(j) = instances.iter().position(|other| other.id == instance.id) {
                return Err(self.err(
                    format!("{key}.id"),
                    format!(
                        "instance id {:?} is already used by instance[{j}]",
                        instance.id
                    ),
                ));
            }
            check_label(&instance.zone).map_err(|why| self.err(format!("{key}.zone"), why))?;
            let address = self.value(&format!("{key}.address"), &instance.address)?;
            instances.push(Instance {
                id: instance.id,
                zone: instance.zone,
                address,
            });
        }
        Ok(instances)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const LB: &str = "[[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.11\"\n[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 8080\ninstance_protocol = \"HTTP\"\ninstance_port = 8000\n";

    fn parse(top: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse(&format!("{top}\n{LB}"), Path::new("elbe.toml"))
    }

    fn refusal(top: &str) -> String {
        parse(top).unwrap_err().to_string()
    }

    #[test]
    fn without_an_api_table_the_region_is_local_1_and_no_key_is_needed() {
        let config = parse("").unwrap();
        assert_eq!(config.api.region, "local-1");
        assert_eq!(config.api.credentials, None);
        assert!(config.instances.is_empty());
    }

    #[test]
    fn the_keys_and_the_catalogue_are_read() {
        let config = parse(
            "[api]\nregion = \"eu-test-1\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"s3cret\"\n\
             [[instance]]\nid = \"i-a1\"\nzone = \"zone-a\"\naddress = \"127.0.0.21:8000\"\n",
        )
        .unwrap();
        assert_eq!(config.api.region, "eu-test-1");
        let credentials = config.api.credentials.unwrap();
        assert_eq!(credentials.access_key_id, "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key, "s3cret");
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert_eq!(config.instances[0].id, "i-a1");
        assert_eq!(config.instances[0].address.to_string(), "127.0.0.21:8000");
    }

    #[test]
    fn one_key_alone_is_refused_naming_the_missing_one() {
        let error = refusal("[api]\naccess_key_id = \"AKIDEXAMPLE\"\n");
        assert!(error.contains("elbe.toml"), "{error}");
        assert!(error.contains("api.secret_access_key"), "{error}");
        assert!(error.contains("give both keys"), "{error}");
        let error = refusal("[api]\nsecret_access_key = \"x\"\n");
        assert!(error.contains("api.access_key_id"), "{error}");
    }

    #[test]
    fn a_bad_region_and_unknown_api_keys_are_refused() {
        assert!(refusal("[api]\nregion = \"not one.label\"\n").contains("api.region"));
        let error = refusal("[api]\nsubnets = []\n");
        assert!(error.contains("subnets"), "{error}");
    }

    #[test]
    fn zones_need_disjoint_pools_and_certificates_readable_files() {
        let config = parse(
            "[api]\nzones = [{ name = \"zone-a\", node_pool = \"127.0.1.0/24\" }, \
             { name = \"zone-b\", node_pool = \"127.0.2.7/24\" }]\n",
        )
        .unwrap();
        assert_eq!(config.api.zones[1].name, "zone-b");
        assert_eq!(config.api.zones[1].node_pool.to_string(), "127.0.2.0/24");
        let error = refusal(
            "[api]\nzones = [{ name = \"zone-a\", node_pool = \"127.0.0.0/16\" }, \
             { name = \"zone-b\", node_pool = \"127.0.2.0/24\" }]\n",
        );
        assert!(error.contains("api.zones[1].node_pool"), "{error}");
        assert!(error.contains("overlaps api.zones[0]"), "{error}");
        let error = refusal("[api]\nzones = [{ name = \"zone-a\", node_pool = \"nowhere\" }]\n");
        assert!(error.contains("api.zones[0].node_pool"), "{error}");
        let error = refusal(
            "[api]\ncertificates = [{ id = \"dev\", cert = \"/no/such.crt\", key = \"/no/such.key\" }]\n",
        );
        assert!(error.contains("api.certificates[0].cert"), "{error}");
        assert!(error.contains("/no/such.crt"), "{error}");
    }

    #[test]
    fn duplicate_catalogue_ids_are_refused() {
        let error = refusal(
            "[[instance]]\nid = \"i-a\"\nzone = \"zone-a\"\naddress = \"127.0.0.21\"\n\
             [[instance]]\nid = \"i-a\"\nzone = \"zone-b\"\naddress = \"127.0.0.22\"\n",
        );
        assert!(error.contains("instance[1].id"), "{error}");
        assert!(error.contains("already used by instance[0]"), "{error}");
        let error = refusal(
            "[[instance]]\nid = \"i-a\"\nzone = \"zone-a\"\naddress = \"not an address\"\n",
        );
        assert!(error.contains("instance[0].address"), "{error}");
    }
}
