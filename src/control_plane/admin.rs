//! The admin listener: the status page, `/status`, `/healthz`, `/metrics`, and run-time registration of instances.
//!
//! - `GET /`: the status page for a browser (`admin/page`), which polls `/status`; its files are `/status.css`
//!   and `/status.js`.
//! - `GET /status`: JSON (DESIGN.md): load balancers, DNS names, nodes and their bound listeners, instance health as
//!   DescribeInstanceHealth would say it, and the configuration generation.
//! - `GET /healthz`: 200 when every listener is accepting and every load balancer has an `InService` instance this
//!   process may use (not a draining one); otherwise 503 with a one-line reason (for keepalived's `track_script`,
//!   `examples/keepalived/`, or an orchestrator).
//! - `GET /metrics`: Prometheus text.
//! - `POST /` (and `GET /?Action=…`): the ELB API, AWS's Query protocol (`control_plane/api`).
//! - `POST /load_balancers/{name}/instances` with `{"instance_id", "zone", "address"}` registers an instance;
//!   `DELETE /load_balancers/{name}/instances/{id}` deregisters one; both answer once the change is kept in the
//!   state store (500 and nothing changed when it cannot be). Errors are JSON `{"error": "..."}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::{self, InstanceAddress};
use crate::control_plane::api::Api;
use crate::control_plane::control::{Control, ControlError};
use crate::observability::metrics::Metrics;
use crate::shutdown::Shutdown;

mod page;

/// What the admin endpoints read.
pub(crate) struct Admin {
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub dns_address: Option<SocketAddr>,
    /// The access logs, whose dropped-line counts are exported at scrape time.
    pub access_logs: Vec<crate::observability::access_log::AccessLog>,
    /// The ELB API (`POST /`).
    pub api: Api,
}

/// Serves the admin endpoints until shutdown.
pub(crate) async fn serve(listener: TcpListener, admin: Arc<Admin>, mut shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.triggered() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handle(&admin, request).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    text(status, "application/json", body)
}

async fn handle(admin: &Admin, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if Api::is_call(request.method(), request.uri()) {
        return admin.api.answer(&admin.control, request).await;
    }
    let path = request.uri().path().to_string();
    let decoded: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match (request.method(), segments.as_slice()) {
        (&Method::GET, [file @ ("" | "status.css" | "status.js")]) => {
            page::asset(file).unwrap_or_else(|| json_error(StatusCode::NOT_FOUND, "no such file"))
        }
        (&Method::GET, ["status"]) => {
            let status = admin.control.status(admin.dns_address);
            match serde_json::to_string_pretty(&status) {
                Ok(body) => text(StatusCode::OK, "application/json", body),
                Err(error) => json_error(StatusCode::INTERNAL_SERVER_ERROR, error),
            }
        }
        (&Method::GET, ["healthz"]) => match admin.control.healthz() {
            Ok(()) => text(StatusCode::OK, "text/plain", "ok\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{reason}\n"),
            ),
        },
        (&Method::GET, ["metrics"]) => {
            admin.control.refresh_pool_gauges();
            let dropped = admin.access_logs.iter().map(|log| log.dropped()).sum();
            admin.metrics.sync_access_log_dropped(dropped);
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                admin.metrics.encode(),
            )
        }
        (&Method::POST, ["load_balancers", name, "instances"]) => {
            let name = name.to_string();
            register(admin, &name, request).await
        }
        (&Method::DELETE, ["load_balancers", name, "instances", id]) => {
            match admin.control.deregister(name, id).await {
                Ok(true) => text(StatusCode::OK, "application/json", "{}"),
                Ok(false) => json_error(
                    StatusCode::NOT_FOUND,
                    format!("Instance {id} is not currently registered with the LoadBalancer."),
                ),
                Err(error @ ControlError::Store(_)) => {
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, error)
                }
                Err(error @ ControlError::Interrupted) => {
                    json_error(StatusCode::SERVICE_UNAVAILABLE, error)
                }
                Err(error) => json_error(StatusCode::NOT_FOUND, error),
            }
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {} {path}", request.method()),
        ),
    }
}

/// Decodes `%XX` escapes in one path segment (so an instance id with `/` or a space can be named in a URL).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    instance_id: String,
    zone: String,
    address: String,
}

async fn register(
    admin: &Admin,
    load_balancer: &str,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("cannot read body: {error}"),
            )
        }
    };
    let registration: Registration = match serde_json::from_slice(&body) {
        Ok(registration) => registration,
        Err(error) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("invalid registration: {error}"),
            )
        }
    };
    for (field, value) in [
        ("instance_id", &registration.instance_id),
        ("zone", &registration.zone),
    ] {
        if let Err(reason) = config::check_label(value) {
            return json_error(StatusCode::BAD_REQUEST, format!("{field}: {reason}"));
        }
    }
    let address: InstanceAddress = match registration.address.parse() {
        Ok(address) => address,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, format!("address: {error}")),
    };
    let instance = config::Instance {
        id: registration.instance_id,
        zone: registration.zone,
        address,
    };
    match admin.control.register(load_balancer, instance).await {
        Ok(()) => text(StatusCode::OK, "application/json", "{}"),
        Err(error @ ControlError::Resolve(_)) => json_error(StatusCode::BAD_REQUEST, error),
        // Not kept in the state store: nothing changed (the message says why).
        Err(error @ ControlError::Store(_)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, error),
        Err(error @ ControlError::Interrupted) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, error)
        }
        Err(error) => json_error(StatusCode::NOT_FOUND, error),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("i-1"), "i-1");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
    }
}
