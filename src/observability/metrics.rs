//! ELB's CloudWatch metrics (ELB-SPEC.md §10) as Prometheus metrics, plus the process's own.
//!
//! Every series is bound to its labels (`load_balancer`, `availability_zone`) once, when a node starts, so the
//! request path only increments atomics: no label hashing, no allocation, no lock. Names follow Prometheus
//! conventions (`_total` counters, `_seconds` histograms, gauges without `_count`); each help text names the
//! CloudWatch metric it stands for. Per-zone series exist from start-up, at zero.
//!
//! | Prometheus | CloudWatch |
//! |---|---|
//! | `elbe_requests_total` | RequestCount |
//! | `elbe_latency_seconds` (histogram) | Latency |
//! | `elbe_healthy_hosts` | HealthyHostCount |
//! | `elbe_unhealthy_hosts` | UnHealthyHostCount |
//! | `elbe_httpcode_elb_4xx_total`, `elbe_httpcode_elb_5xx_total` | HTTPCode_ELB_4XX, HTTPCode_ELB_5XX |
//! | `elbe_httpcode_backend_total{code="2XX".."5XX"}` | HTTPCode_Backend_2XX .. _5XX |
//! | `elbe_backend_connection_errors_total` | BackendConnectionErrors (proxying and health checks) |
//! | `elbe_surge_queue_length` | SurgeQueueLength |
//! | `elbe_spillover_total` | SpilloverCount |
//! | `elbe_http_redirects_total`, `elbe_http_fixed_responses_total` | ALB's HTTP_Redirect_Count, HTTP_Fixed_Response_Count (listener rules) |
//! | `elbe_client_connections`, `elbe_received_bytes_total`, `elbe_sent_bytes_total` | (none: elbe's own) |
//! | `elbe_websocket_upgrades_total` | (none: elbe's own; ELB Classic had no WebSockets on HTTP listeners) |
//! | `elbe_tls_handshakes_total`, `elbe_tls_handshake_failures_total` | (none) |
//! | `elbe_proxy_protocol_refused_total` | (none: elbe's `accept_proxy_protocol`) |
//! | `elbe_backend_idle_connections`, `elbe_backend_active_requests` | (none: pool occupancy) |
//! | `elbe_config_reloads_total{result}` | (none) |
//! | `elbe_access_log_dropped_total` | (none) |
//! | `elbe_state_store_reachable`, `elbe_state_store_failed_calls_total` | (none: cluster mode's etcd, `metrics/store`) |

#[cfg(feature = "cluster")]
mod store;

#[cfg(feature = "cluster")]
pub(crate) use store::StoreMetrics;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

const LABELS: &[&str] = &["load_balancer", "availability_zone"];

/// The process's metric registry and the metric families in it.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    healthy_hosts: IntGaugeVec,
    unhealthy_hosts: IntGaugeVec,
    elb_4xx: IntCounterVec,
    elb_5xx: IntCounterVec,
    backend_codes: IntCounterVec,
    backend_connection_errors: IntCounterVec,
    client_connections: IntGaugeVec,
    received_bytes: IntCounterVec,
    sent_bytes: IntCounterVec,
    tls_handshakes: IntCounterVec,
    tls_handshake_failures: IntCounterVec,
    proxy_protocol_refused: IntCounterVec,
    backend_idle_connections: IntGaugeVec,
    backend_active_requests: IntGaugeVec,
    reloads: IntCounterVec,
    access_log_dropped: IntCounter,
    surge_queue_length: IntGaugeVec,
    spillover: IntCounterVec,
    websocket_upgrades: IntCounterVec,
    redirects: IntCounterVec,
    fixed_responses: IntCounterVec,
}

/// One node's (load balancer and zone) pre-bound series.
#[derive(Clone)]
pub struct ZoneMetrics {
    pub requests: IntCounter,
    pub latency: Histogram,
    pub healthy_hosts: IntGauge,
    pub unhealthy_hosts: IntGauge,
    pub elb_4xx: IntCounter,
    pub elb_5xx: IntCounter,
    /// Backend 2XX, 3XX, 4XX, 5XX, by `status / 100 - 2`.
    pub backend: [IntCounter; 4],
    pub backend_connection_errors: IntCounter,
    pub client_connections: IntGauge,
    pub received_bytes: IntCounter,
    pub sent_bytes: IntCounter,
    pub tls_handshakes: IntCounter,
    pub tls_handshake_failures: IntCounter,
    /// Connections closed on a listener with `accept_proxy_protocol` because their PROXY header was missing,
    /// malformed or late.
    pub proxy_protocol_refused: IntCounter,
    pub backend_idle_connections: IntGauge,
    pub backend_active_requests: IntGauge,
    pub surge_queue_length: IntGauge,
    pub spillover: IntCounter,
    pub websocket_upgrades: IntCounter,
    /// Listener rules' redirects and fixed responses (ALB's HTTP_Redirect_Count, HTTP_Fixed_Response_Count).
    pub redirects: IntCounter,
    pub fixed_responses: IntCounter,
}

/// One client connection counted in `elbe_client_connections` for as long as this lives. Dropped however the
/// connection ends: a drain's deadline cuts a connection by dropping its future, which an explicit decrement after
/// the serving `await` never saw (the gauge kept every cut connection).
#[derive(Debug)]
pub(crate) struct CountedConnection(IntGauge);

impl CountedConnection {
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        CountedConnection(gauge.clone())
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ZoneMetrics {
    /// Counts a response an instance sent.
    pub fn backend_status(&self, status: u16) {
        if let Some(counter) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.backend.get(i as usize))
        {
            counter.inc();
        }
    }

    /// Counts a response elbe made itself.
    pub fn elb_status(&self, status: u16) {
        match status / 100 {
            4 => self.elb_4xx.inc(),
            5 => self.elb_5xx.inc(),
            _ => {}
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a collector; the definitions are static, so failing here is a programming error caught by tests.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric is defined once with a valid name");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    register(registry, vec)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), LABELS).expect("static metric definition");
    register(registry, vec)
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "elbe_latency_seconds",
                "Time from sending the request to the instance until its response headers (CloudWatch Latency).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            LABELS,
        )
        .expect("static metric definition");
        Metrics {
            requests: counter(&r, "elbe_requests_total", "Requests received by the node (CloudWatch RequestCount).", LABELS),
            latency: register(&r, latency),
            healthy_hosts: gauge(&r, "elbe_healthy_hosts", "InService instances in the zone (CloudWatch HealthyHostCount)."),
            unhealthy_hosts: gauge(
                &r,
                "elbe_unhealthy_hosts",
                "Registered instances in the zone that are not InService (CloudWatch UnHealthyHostCount).",
            ),
            elb_4xx: counter(
                &r,
                "elbe_httpcode_elb_4xx_total",
                "4xx responses generated by the load balancer itself (CloudWatch HTTPCode_ELB_4XX).",
                LABELS,
            ),
            elb_5xx: counter(
                &r,
                "elbe_httpcode_elb_5xx_total",
                "5xx responses generated by the load balancer itself (CloudWatch HTTPCode_ELB_5XX).",
                LABELS,
            ),
            backend_codes: counter(
                &r,
                "elbe_httpcode_backend_total",
                "Responses from instances by status class 2XX..5XX (CloudWatch HTTPCode_Backend_2XX.._5XX).",
                &["load_balancer", "availability_zone", "code"],
            ),
            backend_connection_errors: counter(
                &r,
                "elbe_backend_connection_errors_total",
                "Failed connections to instances, by proxying and by health checks (CloudWatch BackendConnectionErrors).",
                LABELS,
            ),
            client_connections: gauge(&r, "elbe_client_connections", "Client connections open on the node."),
            received_bytes: counter(
                &r,
                "elbe_received_bytes_total",
                "Bytes received from clients (after TLS), heads included.",
                LABELS,
            ),
            sent_bytes: counter(&r, "elbe_sent_bytes_total", "Bytes sent to clients (before TLS), heads included.", LABELS),
            tls_handshakes: counter(&r, "elbe_tls_handshakes_total", "TLS handshakes completed on HTTPS listeners.", LABELS),
            tls_handshake_failures: counter(
                &r,
                "elbe_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out on HTTPS listeners.",
                LABELS,
            ),
            proxy_protocol_refused: counter(
                &r,
                "elbe_proxy_protocol_refused_total",
                "Client connections closed because a listener with accept_proxy_protocol got no valid PROXY header in time.",
                LABELS,
            ),
            backend_idle_connections: gauge(
                &r,
                "elbe_backend_idle_connections",
                "Idle keep-alive connections pooled to the zone's instances (read at scrape time).",
            ),
            backend_active_requests: gauge(
                &r,
                "elbe_backend_active_requests",
                "Requests outstanding on the zone's instances (read at scrape time).",
            ),
            reloads: counter(
                &r,
                "elbe_config_reloads_total",
                "Configuration reloads (SIGHUP) by result: ok or error.",
                &["result"],
            ),
            surge_queue_length: gauge(
                &r,
                "elbe_surge_queue_length",
                "Requests waiting in the node's surge queue for an instance below its limit (CloudWatch SurgeQueueLength).",
            ),
            spillover: counter(
                &r,
                "elbe_spillover_total",
                "Requests refused with 503 because the surge queue was full (CloudWatch SpilloverCount).",
                LABELS,
            ),
            websocket_upgrades: counter(
                &r,
                "elbe_websocket_upgrades_total",
                "WebSocket upgrades the instances accepted (elbe's own: ELB Classic had none); each is one request.",
                LABELS,
            ),
            redirects: counter(
                &r,
                "elbe_http_redirects_total",
                "Redirects answered by listener rules (ALB's CloudWatch HTTP_Redirect_Count).",
                LABELS,
            ),
            fixed_responses: counter(
                &r,
                "elbe_http_fixed_responses_total",
                "Fixed responses answered by listener rules (ALB's CloudWatch HTTP_Fixed_Response_Count).",
                LABELS,
            ),
            access_log_dropped: register(
                &r,
                IntCounter::new(
                    "elbe_access_log_dropped_total",
                    "Access-log lines dropped because the writer fell behind or could not write.",
                )
                .expect("static metric definition"),
            ),
            registry: r,
        }
    }

    /// Binds (and so creates, at zero) every series of one node's zone.
    pub fn zone(&self, load_balancer: &str, zone: &str) -> ZoneMetrics {
        let labels = [load_balancer, zone];
        let code = |c: &str| {
            self.backend_codes
                .with_label_values(&[load_balancer, zone, c])
        };
        ZoneMetrics {
            requests: self.requests.with_label_values(&labels),
            latency: self.latency.with_label_values(&labels),
            healthy_hosts: self.healthy_hosts.with_label_values(&labels),
            unhealthy_hosts: self.unhealthy_hosts.with_label_values(&labels),
            elb_4xx: self.elb_4xx.with_label_values(&labels),
            elb_5xx: self.elb_5xx.with_label_values(&labels),
            backend: [code("2XX"), code("3XX"), code("4XX"), code("5XX")],
            backend_connection_errors: self.backend_connection_errors.with_label_values(&labels),
            client_connections: self.client_connections.with_label_values(&labels),
            received_bytes: self.received_bytes.with_label_values(&labels),
            sent_bytes: self.sent_bytes.with_label_values(&labels),
            tls_handshakes: self.tls_handshakes.with_label_values(&labels),
            tls_handshake_failures: self.tls_handshake_failures.with_label_values(&labels),
            proxy_protocol_refused: self.proxy_protocol_refused.with_label_values(&labels),
            backend_idle_connections: self.backend_idle_connections.with_label_values(&labels),
            backend_active_requests: self.backend_active_requests.with_label_values(&labels),
            surge_queue_length: self.surge_queue_length.with_label_values(&labels),
            spillover: self.spillover.with_label_values(&labels),
            websocket_upgrades: self.websocket_upgrades.with_label_values(&labels),
            redirects: self.redirects.with_label_values(&labels),
            fixed_responses: self.fixed_responses.with_label_values(&labels),
        }
    }

    /// Removes every series of one node's zone (its load balancer or zone is gone), so `/metrics` stops listing
    /// it; handles bound before keep counting, unexported. Series that were never bound are no error.
    pub fn forget_zone(&self, load_balancer: &str, zone: &str) {
        let labels = [load_balancer, zone];
        for code in ["2XX", "3XX", "4XX", "5XX"] {
            let _ = self
                .backend_codes
                .remove_label_values(&[load_balancer, zone, code]);
        }
        let _ = self.latency.remove_label_values(&labels);
        for counter in [
            &self.requests,
            &self.elb_4xx,
            &self.elb_5xx,
            &self.backend_connection_errors,
            &self.received_bytes,
            &self.sent_bytes,
            &self.tls_handshakes,
            &self.tls_handshake_failures,
            &self.proxy_protocol_refused,
            &self.spillover,
            &self.websocket_upgrades,
            &self.redirects,
            &self.fixed_responses,
        ] {
            let _ = counter.remove_label_values(&labels);
        }
        for gauge in [
            &self.healthy_hosts,
            &self.unhealthy_hosts,
            &self.client_connections,
            &self.backend_idle_connections,
            &self.backend_active_requests,
            &self.surge_queue_length,
        ] {
            let _ = gauge.remove_label_values(&labels);
        }
    }

    /// Counts a configuration reload.
    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Brings the dropped-lines counter up to `total` (the access logs' own count, read at scrape time).
    pub fn sync_access_log_dropped(&self, total: u64) {
        let seen = self.access_log_dropped.get();
        if total > seen {
            self.access_log_dropped.inc_by(total - seen);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_series_exists_from_the_start_at_zero() {
        let metrics = Metrics::new();
        let zone = metrics.zone("web", "zone-a");
        zone.backend_status(204);
        zone.backend_status(503);
        zone.backend_status(101);
        zone.elb_status(408);
        let text = metrics.encode();
        for line in [
            "elbe_requests_total{availability_zone=\"zone-a\",load_balancer=\"web\"} 0",
            "elbe_healthy_hosts{availability_zone=\"zone-a\",load_balancer=\"web\"} 0",
            "elbe_httpcode_backend_total{availability_zone=\"zone-a\",code=\"2XX\",load_balancer=\"web\"} 1",
            "elbe_httpcode_backend_total{availability_zone=\"zone-a\",code=\"5XX\",load_balancer=\"web\"} 1",
            "elbe_httpcode_backend_total{availability_zone=\"zone-a\",code=\"3XX\",load_balancer=\"web\"} 0",
            "elbe_httpcode_elb_4xx_total{availability_zone=\"zone-a\",load_balancer=\"web\"} 1",
            "elbe_tls_handshakes_total{availability_zone=\"zone-a\",load_balancer=\"web\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        metrics.zone("web", "zone-b");
        metrics.forget_zone("web", "zone-a");
        let text = metrics.encode();
        assert!(!text.contains("availability_zone=\"zone-a\""), "{text}");
        assert!(text.contains("availability_zone=\"zone-b\""), "{text}");
        metrics.forget_zone("never", "bound");
    }
}
