//! Reload (SIGHUP, [`Server::reload_from`]): a new configuration file applied while elbe serves, all or nothing.
//!
//! Everything that can fail happens first and changes nothing: the file parses and validates, the process-wide
//! settings a reload does not change are the same ([`Fixed`]), every certificate loads, every `host:port` instance
//! resolves, every new access log opens, every new listener's socket binds. Then the commit, which cannot fail:
//! the control plane takes the new load balancers, zones, instances, checks, policies, rules and attributes and
//! publishes new snapshots; the listeners kept take their new settings without being rebound, the new ones start
//! accepting, the removed ones drain; the DNS responder answers the new names. The trade-off: a reload that
//! touches one of the fixed settings is refused whole, and says which, rather than half-applied.

use std::net::SocketAddr;
use std::path::Path;

use super::{resolve_instances, Server, Serving};
use crate::config::{self, Config};
use crate::control_plane::state_dir;
use crate::server::ReloadError;

/// The process-wide settings a reload does not change: the admin and DNS sockets, how names are resolved, the
/// limits every connection was built with, where state is kept; the ELB API's keys and instance catalogue, which
/// the admin listener was started with.
pub(super) struct Fixed {
    admin: SocketAddr,
    dns: Option<SocketAddr>,
    discovery: config::Discovery,
    limits: config::Limits,
    state_dir: std::path::PathBuf,
    api: config::Api,
    instances: Vec<config::Instance>,
}

impl Fixed {
    pub(super) fn of(config: &Config) -> Fixed {
        Fixed {
            admin: config.admin.listen,
            dns: config.dns.as_ref().map(|dns| dns.listen),
            discovery: config.discovery.clone(),
            limits: config.limits.clone(),
            state_dir: config.state_dir.clone(),
            api: config.api.clone(),
            instances: config.instances.clone(),
        }
    }

    /// The first fixed setting `config` changes, by its key in the file.
    fn changed_in(&self, config: &Config) -> Option<&'static str> {
        let now = Fixed::of(config);
        if now.admin != self.admin {
            Some("admin.listen")
        } else if now.dns != self.dns {
            Some("dns.listen")
        } else if now.discovery != self.discovery {
            Some("[discovery]")
        } else if now.limits != self.limits {
            Some("[limits]")
        } else if now.state_dir != self.state_dir {
            Some("state_dir")
        } else if now.api != self.api {
            Some("[api]")
        } else if now.instances != self.instances {
            Some("[[instance]]")
        } else {
            None
        }
    }
}

impl Server {
    /// Reloads the configuration file (SIGHUP): load balancers, zones, listeners, instances, health checks,
    /// policies, rules, attributes and certificates change without dropping a connection on a listener that
    /// stays. A file that does not parse or validate, a certificate that does not load, a listener that cannot
    /// bind, or a change to a setting only a restart applies is refused: nothing changes, the old configuration
    /// keeps serving and `/status` reports the error.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ReloadError> {
        // One reload at a time; the semaphore is never closed, so waiting cannot fail.
        let _one = self.reloading.acquire().await;
        // Log files reopen whatever the new configuration says (logrotate sends SIGHUP after moving them).
        self.live().access_logs.reopen();
        let result = match config::load(path) {
            Ok(config) => self.reload(&config).await,
            Err(error) => Err(error.into()),
        };
        self.metrics.reloaded(result.is_ok());
        if let Err(error) = &result {
            tracing::error!(%error, "reload refused; the previous configuration keeps serving");
            self.control.reload_failed(error.to_string());
        }
        result
    }

    async fn reload(&self, config: &Config) -> Result<(), ReloadError> {
        if let Some(key) = self.fixed.changed_in(config) {
            return Err(ReloadError::NeedsRestart { key });
        }
        let tls = super::listeners::tls_acceptors(config)?;
        let secret = state_dir::kept_stickiness_secret(config).map_err(super::StartError::from)?;
        // The store's `host:port` registrations resolve with the file's (the reload lays the records on again).
        let overlaid = self.control.overlaid(config);
        let resolved = resolve_instances(&overlaid, self.control.discovery()).await?;
        let mut live = self.live();
        let logs = live.access_logs.stage(config)?;
        let fresh = live.listeners.bind_new(config)?;

        // Nothing below fails.
        if let Some(secret) = secret {
            self.control.use_stickiness_secret(secret);
        }
        let addresses = live.listeners.addresses(&fresh);
        self.control.reload(config, &resolved, &addresses);
        self.control.watch_names();
        let nodes = self
            .control
            .with_listeners(|nodes| super::listeners::nodes(nodes));
        let serving = Serving {
            config,
            metrics: &self.metrics,
            logs: &logs.by_load_balancer,
            tls: &tls,
            passive: &self.passive,
            connections: &self.connections,
            shutdown_grace: self.shutdown_grace,
        };
        let removed = live.listeners.commit(&nodes, fresh, &serving);
        live.access_logs.commit(logs);
        drop(live);
        if let Some((_, zone)) = &self.dns {
            zone.store(std::sync::Arc::new(crate::dns::Zone::of(config)));
        }
        tracing::info!(
            listeners = nodes.len(),
            removed = removed.len(),
            "configuration reloaded"
        );
        Ok(())
    }
}
