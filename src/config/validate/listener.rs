//! A load balancer's `[[load_balancer.listener]]`s: protocols, ports, certificates and TLS policy.
//!
//! Rule: ELB-SPEC §1. A Layer 7 front end (HTTP/HTTPS) needs a Layer 7 back end and a Layer 4 one (TCP/SSL) a
//! Layer 4 back end; listeners sharing an instance port agree on whether it speaks TLS; HTTPS and SSL listeners,
//! and only they, carry certificates (ELB's `SSLCertificateId`; here PEM files) and an SSL policy. Two listeners
//! may not bind the same load balancer port, except 0 (any free port), which tests use.
//!
//! Each certificate and key file must exist and be readable when the file is validated, so a missing one is
//! blamed on its key (`load_balancer[0].listener[1].certificates[0].cert`) by `elbe check`, start and reload alike.
//!
//! `freebind` (elbe's extension, default false) binds the listener with `IP_FREEBIND`, so its node's address need
//! not be on the machine: nothing here checks a node's address against the machine's (bind time would, and
//! freebind answers it), and a system without `IP_FREEBIND` (not Linux) refuses the key here.
//!
//! Trade-off: the SSL policy's name is only checked to be present here, and a certificate file only to be
//! readable; whether elbe knows the policy and whether the file holds a certificate matching its key are the TLS
//! module's questions, which holds the list of policies and parses the PEM.

use std::fs::File;
use std::path::Path;

use crate::config::error::ConfigError;
use crate::config::model::{CertificatePaths, Listener};
use crate::config::protocol::Protocol;
use crate::config::raw;
use crate::config::validate::context::Cx;

impl Cx<'_> {
    /// At least one listener, each valid on its own and compatible with those before it.
    pub(super) fn listeners(
        &self,
        key: &str,
        raw: Vec<raw::Listener>,
    ) -> Result<Vec<Listener>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err(
                format!("{key}.listener"),
                "at least one listener is required ([[load_balancer.listener]])",
            ));
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for (l, listener) in raw.into_iter().enumerate() {
            let lkey = format!("{key}.listener[{l}]");
            let listener = self.listener(&lkey, listener)?;
            self.check_against_earlier(&lkey, &listener, &listeners)?;
            listeners.push(listener);
        }
        Ok(listeners)
    }

    /// The rules between two listeners: distinct load balancer ports, and one TLS choice per instance port.
    fn check_against_earlier(
        &self,
        lkey: &str,
        listener: &Listener,
        earlier: &[Listener],
    ) -> Result<(), ConfigError> {
        for (j, other) in earlier.iter().enumerate() {
            if listener.load_balancer_port != 0
                && listener.load_balancer_port == other.load_balancer_port
            {
                return Err(self.err(
                    format!("{lkey}.load_balancer_port"),
                    format!(
                        "port {} is already used by listener[{j}]",
                        listener.load_balancer_port
                    ),
                ));
            }
            // ELB-SPEC §1: listeners sharing an instance port agree on whether it speaks TLS.
            if listener.instance_port == other.instance_port
                && listener.instance_protocol.is_secure() != other.instance_protocol.is_secure()
            {
                return Err(self.err(
                    format!("{lkey}.instance_protocol"),
                    format!(
                        "listener[{j}] sends {} to instance_port {}; listeners sharing an instance_port must all \
                         be secure (HTTPS/SSL) or all plain (HTTP/TCP)",
                        other.instance_protocol, other.instance_port
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One listener on its own: protocol pairing, instance port, certificates, SSL policy.
    fn listener(&self, key: &str, raw: raw::Listener) -> Result<Listener, ConfigError> {
        let protocol: Protocol = self.value(&format!("{key}.protocol"), &raw.protocol)?;
        let instance_protocol: Protocol =
            self.value(&format!("{key}.instance_protocol"), &raw.instance_protocol)?;
        // ELB-SPEC §1: Layer 7 in front needs Layer 7 behind, Layer 4 needs Layer 4.
        if protocol.is_http() != instance_protocol.is_http() {
            let expected = if protocol.is_http() {
                "HTTP or HTTPS"
            } else {
                "TCP or SSL"
            };
            return Err(self.err(
                format!("{key}.instance_protocol"),
                format!(
                    "{} {protocol} listener needs an instance_protocol of {expected}, not {instance_protocol}",
                    article(protocol)
                ),
            ));
        }
        if raw.instance_port == 0 {
            return Err(self.err(
                format!("{key}.instance_port"),
                "must be 1-65535 (0, any free port, only makes sense for load_balancer_port)",
            ));
        }
        // Every listener protocol may accept a trusted upstream's PROXY header (TCP, SSL, HTTP, HTTPS).
        let accept_proxy_protocol = raw.accept_proxy_protocol.unwrap_or(false);
        let freebind = self.freebind(key, raw.freebind)?;
        let certificates = self.certificates(key, protocol, raw.certificates)?;
        self.check_ssl_policy(key, protocol, raw.ssl_policy.as_deref())?;
        Ok(Listener {
            protocol,
            load_balancer_port: raw.load_balancer_port,
            instance_protocol,
            instance_port: raw.instance_port,
            certificates,
            ssl_policy: raw.ssl_policy,
            // Checked against the load balancer's policies once both are read (`traffic`).
            policy_names: raw.policy_names,
            accept_proxy_protocol,
            freebind,
        })
    }

    /// `freebind` (default false): `IP_FREEBIND` exists on Linux only, so elsewhere asking for it is refused here,
    /// naming the key, rather than at bind time.
    fn freebind(&self, key: &str, raw: Option<bool>) -> Result<bool, ConfigError> {
        let freebind = raw.unwrap_or(false);
        if freebind && !cfg!(any(target_os = "linux", target_os = "android")) {
            return Err(self.err(
                format!("{key}.freebind"),
                "freebind (IP_FREEBIND) is Linux-only; on this system the node's address must be on the machine",
            ));
        }
        Ok(freebind)
    }

    /// Certificate paths, resolved against the file's folder, each file there and readable: at least one for
    /// HTTPS/SSL, none otherwise.
    fn certificates(
        &self,
        key: &str,
        protocol: Protocol,
        raw: Vec<raw::Certificate>,
    ) -> Result<Vec<CertificatePaths>, ConfigError> {
        let mut certificates = Vec::with_capacity(raw.len());
        for (c, certificate) in raw.into_iter().enumerate() {
            let ckey = format!("{key}.certificates[{c}]");
            let paths = CertificatePaths {
                cert: self.base.join(&certificate.cert),
                key: self.base.join(&certificate.key),
            };
            for (name, given, path, what) in [
                ("cert", &certificate.cert, &paths.cert, "certificate"),
                ("key", &certificate.key, &paths.key, "private key"),
            ] {
                if given.as_os_str().is_empty() {
                    return Err(
                        self.err(format!("{ckey}.{name}"), "must be a file path, not empty")
                    );
                }
                check_readable(path).map_err(|why| {
                    self.err(
                        format!("{ckey}.{name}"),
                        format!("cannot read the {what} file {}: {why}", path.display()),
                    )
                })?;
            }
            certificates.push(paths);
        }
        if protocol.is_secure() && certificates.is_empty() {
            return Err(self.err(
                format!("{key}.certificates"),
                format!("an {protocol} listener needs at least one certificate: certificates = [{{ cert = \"...\", key = \"...\" }}]"),
            ));
        }
        if !protocol.is_secure() && !certificates.is_empty() {
            return Err(self.err(
                format!("{key}.certificates"),
                format!("only HTTPS and SSL listeners take certificates; this one is {protocol}"),
            ));
        }
        Ok(certificates)
    }

    /// An SSL policy only on HTTPS/SSL listeners, and then a non-empty name.
    fn check_ssl_policy(
        &self,
        key: &str,
        protocol: Protocol,
        policy: Option<&str>,
    ) -> Result<(), ConfigError> {
        match policy {
            Some(_) if !protocol.is_secure() => Err(self.err(
                format!("{key}.ssl_policy"),
                format!("only HTTPS and SSL listeners take an ssl_policy; this one is {protocol}"),
            )),
            Some(policy) if policy.trim().is_empty() => Err(self.err(
                format!("{key}.ssl_policy"),
                "must name a policy, not be empty",
            )),
            _ => Ok(()),
        }
    }
}

/// "an HTTP listener", "a TCP listener": the article as the protocol's name is spoken.
fn article(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http | Protocol::Https | Protocol::Ssl => "an",
        Protocol::Tcp => "a",
    }
}

/// Whether `path` is a file elbe can open for reading. Checked when the file is validated, so `elbe check`, start
/// and reload name the key (`...certificates[0].key`) of a missing file rather than the TLS layer's listener and
/// port; whether its contents are a certificate is still the TLS layer's question.
pub(super) fn check_readable(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    })?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if metadata.is_dir() {
        return Err("it is a directory, not a file".to_owned());
    }
    Ok(())
}
