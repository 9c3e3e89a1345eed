//! `[cluster]`: several elbe processes acting as one ELB on one etcd (DESIGN.md "The state store"; issue 16).
//!
//! Rule: everything a cluster member needs to join is checked before it starts, so a typo is a refusal at
//! `elbe check`, not a process that never finds its peers: `etcd` lists at least one `http://host:port` client
//! URL (etcd's own form; the port is always written, as etcd's 2379 is no default of a URL), none twice;
//! `prefix` is an absolute key folder (`/elbe`); `node_id` is one DNS label, since it names the member in etcd
//! keys, `/status` and metrics; `zones` are at least one zone label, none twice; `lease_ttl` is whole seconds and
//! at least 2 s, because etcd's leases count seconds and etcd silently lengthens a shorter one to its minimum
//! (about 2 s with its default election timeout).
//!
//! Trade-off: `https://` endpoints are refused for now: the etcd client is built without TLS, and a URL it
//! would send in clear text must not look encrypted. Whether the zones name zones of the configured load
//! balancers is left to the cluster's start, as load balancers made through the API add zones at run time.

use std::time::Duration;

use crate::config::error::ConfigError;
use crate::config::model::Cluster;
use crate::config::names::{check_label, is_dns_label};
use crate::config::raw;
use crate::config::validate::context::Cx;

/// The shortest lease etcd keeps as asked.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

impl Cx<'_> {
    /// `[cluster]`, with the defaults of what it leaves out.
    pub(super) fn cluster(&self, raw: raw::Cluster) -> Result<Cluster, ConfigError> {
        Ok(Cluster {
            etcd: self.etcd_endpoints(raw.etcd)?,
            prefix: self.prefix(raw.prefix)?,
            node_id: self.node_id(raw.node_id)?,
            zones: self.cluster_zones(raw.zones)?,
            lease_ttl: self.lease_ttl(raw.lease_ttl)?,
            dns_drain: raw.dns_drain.map_or(Cluster::DEFAULT_DNS_DRAIN, |v| v.0),
        })
    }

    fn etcd_endpoints(&self, raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err(
                "cluster.etcd",
                "must list at least one etcd client URL, e.g. [\"http://10.0.0.5:2379\"]",
            ));
        }
        let mut endpoints: Vec<String> = Vec::with_capacity(raw.len());
        for (n, text) in raw.into_iter().enumerate() {
            let key = format!("cluster.etcd[{n}]");
            let endpoint = endpoint(&text).map_err(|why| self.err(&key, why))?;
            if let Some(j) = endpoints.iter().position(|e| *e == endpoint) {
                return Err(self.err(key, format!("{endpoint} is already cluster.etcd[{j}]")));
            }
            endpoints.push(endpoint);
        }
        Ok(endpoints)
    }

    fn prefix(&self, raw: Option<String>) -> Result<String, ConfigError> {
        let Some(prefix) = raw else {
            return Ok(Cluster::DEFAULT_PREFIX.to_owned());
        };
        let segments_ok = prefix
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(|segment| check_label(segment).is_ok()));
        if !segments_ok {
            return Err(self.err(
                "cluster.prefix",
                format!("{prefix:?} must be an absolute etcd key folder such as \"/elbe\" (starting with '/', no empty segment, no trailing '/', no spaces)"),
            ));
        }
        Ok(prefix)
    }

    fn node_id(&self, node_id: String) -> Result<String, ConfigError> {
        if !is_dns_label(&node_id) {
            return Err(self.err(
                "cluster.node_id",
                format!("{node_id:?} must be one DNS label (letters, digits and '-', at most 63 characters), unique per process, e.g. \"lb-1a\""),
            ));
        }
        Ok(node_id)
    }

    fn cluster_zones(&self, raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err(
                "cluster.zones",
                "must name at least one zone whose nodes this process runs, e.g. [\"zone-a\"]",
            ));
        }
        let mut zones: Vec<String> = Vec::with_capacity(raw.len());
        for (n, zone) in raw.into_iter().enumerate() {
            let key = format!("cluster.zones[{n}]");
            check_label(&zone).map_err(|why| self.err(&key, why))?;
            if let Some(j) = zones.iter().position(|z| *z == zone) {
                return Err(self.err(key, format!("zone {zone:?} is already cluster.zones[{j}]")));
            }
            zones.push(zone);
        }
        Ok(zones)
    }

    fn lease_ttl(&self, raw: Option<raw::DurationValue>) -> Result<Duration, ConfigError> {
        let Some(raw::DurationValue(ttl)) = raw else {
            return Ok(Cluster::DEFAULT_LEASE_TTL);
        };
        if ttl.subsec_nanos() != 0 || ttl < MIN_LEASE_TTL {
            return Err(self.err(
                "cluster.lease_ttl",
                format!("{ttl:?} must be whole seconds and at least {MIN_LEASE_TTL:?}: etcd's leases count seconds, and etcd lengthens a shorter one to its minimum"),
            ));
        }
        Ok(ttl)
    }
}

/// An etcd client URL as etcd writes them, `http://host:port`, without a trailing `/`.
fn endpoint(text: &str) -> Result<String, String> {
    let example = "write it as etcd's client URL, e.g. \"http://10.0.0.5:2379\"";
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not a URL: {example}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{text:?}: TLS to etcd is not supported yet (elbe's etcd client is built without it); use http:// on a private network"
            ))
        }
        _ => return Err(format!("{text:?} has no http:// scheme: {example}")),
    }
    let authority = uri
        .authority()
        .filter(|authority| authority.port_u16().is_some() && !authority.host().is_empty())
        .ok_or_else(|| format!("{text:?} must give a host and a port: {example}"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{text:?} must not have a path or a query: {example}"
        ));
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{parse, Cluster};

    const LOAD_BALANCER: &str =
        "[[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\n\
        name = \"zone-a\"\nnode = \"127.0.0.11\"\n[[load_balancer.listener]]\nprotocol = \"HTTP\"\n\
        load_balancer_port = 8080\ninstance_protocol = \"HTTP\"\ninstance_port = 8000\n";

    fn file() -> &'static Path {
        Path::new("cluster.toml")
    }

    fn cluster(table: &str) -> Result<Option<Cluster>, crate::config::ConfigError> {
        parse(&format!("[cluster]\n{table}\n{LOAD_BALANCER}"), file()).map(|c| c.cluster)
    }

    fn fails(table: &str, key: &str, needle: &str) {
        let error = cluster(table).expect_err(table);
        assert_eq!(error.file, file());
        assert_eq!(error.key, key, "{error}");
        assert!(error.reason.contains(needle), "{error}");
    }

    const GOOD: &str =
        "etcd = [\"http://127.0.0.1:2379\"]\nnode_id = \"lb-1a\"\nzones = [\"zone-a\"]";

    #[test]
    fn a_cluster_table_takes_its_defaults_and_none_means_no_cluster() {
        assert_eq!(parse(LOAD_BALANCER, file()).unwrap().cluster, None);
        assert_eq!(
            cluster(GOOD).unwrap(),
            Some(Cluster {
                etcd: vec!["http://127.0.0.1:2379".into()],
                prefix: "/elbe".into(),
                node_id: "lb-1a".into(),
                zones: vec!["zone-a".into()],
                lease_ttl: Duration::from_secs(10),
                dns_drain: Duration::from_secs(120),
            })
        );
        let given = cluster(
            "etcd = [\"http://10.0.0.5:2379/\", \"http://[::1]:2379\"]\nprefix = \"/prod/elbe\"\n\
             node_id = \"lb-2\"\nzones = [\"a\", \"b\"]\nlease_ttl = \"3s\"\ndns_drain = \"500ms\"",
        )
        .unwrap()
        .unwrap();
        assert_eq!(given.etcd, ["http://10.0.0.5:2379", "http://[::1]:2379"]);
        assert_eq!(given.prefix, "/prod/elbe");
        assert_eq!(given.lease_ttl, Duration::from_secs(3));
        assert_eq!(given.dns_drain, Duration::from_millis(500));
    }

    #[test]
    fn each_mistake_in_the_cluster_table_is_named_by_its_key() {
        let with = |line: &str| format!("{GOOD}\n{line}");
        fails(
            "node_id = \"x\"\nzones = [\"a\"]",
            "cluster.etcd",
            "at least one etcd client URL",
        );
        fails(
            "etcd = [\"http://127.0.0.1:2379\"]\nzones = [\"a\"]",
            "cluster.node_id",
            "is required",
        );
        let endpoint = |url: &str, needle: &str| {
            fails(
                &format!("etcd = [\"{url}\"]\nnode_id = \"x\"\nzones = [\"a\"]"),
                "cluster.etcd[0]",
                needle,
            );
        };
        endpoint("127.0.0.1:2379", "no http:// scheme");
        endpoint("https://127.0.0.1:2379", "TLS to etcd is not supported yet");
        endpoint("http://127.0.0.1", "a host and a port");
        endpoint("http://127.0.0.1:2379/v3", "must not have a path");
        endpoint("not a url", "is not a URL");
        fails(
            "etcd = [\"http://a:1\", \"http://a:1/\"]\nnode_id = \"x\"\nzones = [\"a\"]",
            "cluster.etcd[1]",
            "is already cluster.etcd[0]",
        );
        for prefix in ["elbe", "/", "/elbe/", "//elbe", "/el be"] {
            fails(
                &with(&format!("prefix = \"{prefix}\"")),
                "cluster.prefix",
                "absolute etcd key folder",
            );
        }
        fails(
            "etcd = [\"http://a:1\"]\nnode_id = \"lb/1\"\nzones = [\"a\"]",
            "cluster.node_id",
            "one DNS label",
        );
        fails(
            "etcd = [\"http://a:1\"]\nnode_id = \"x\"",
            "cluster.zones",
            "at least one zone",
        );
        fails(
            "etcd = [\"http://a:1\"]\nnode_id = \"x\"\nzones = [\"a\", \"a\"]",
            "cluster.zones[1]",
            "is already cluster.zones[0]",
        );
        fails(
            &with("lease_ttl = \"1500ms\""),
            "cluster.lease_ttl",
            "whole seconds",
        );
        fails(
            &with("lease_ttl = \"1s\""),
            "cluster.lease_ttl",
            "at least 2s",
        );
        fails(
            &with("dns_drain = \"soon\""),
            "cluster.dns_drain",
            "duration",
        );
        fails(
            &with("leasettl = \"5s\""),
            "cluster.leasettl",
            "unknown field",
        );
    }
}
