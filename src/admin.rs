//! The admin listener: `/status`, `/healthz`, `/metrics`, and run-time registration of instances.
//!
//! - `GET /status`: JSON (DESIGN.md): load balancers, DNS names, nodes and their bound listeners, instance health as
//!   DescribeInstanceHealth would say it, and the configuration generation.
//! - `GET /healthz`: 200 when every listener is accepting and every load balancer has an `InService` instance this
//!   process may use; otherwise 503 with a one-line reason (for keepalived's `track_script` or an orchestrator).
//! - `GET /metrics`: Prometheus text.
//! - `POST /load_balancers/{name}/instances` with `{"instance_id", "zone", "address"}` registers an instance;
//!   `DELETE /load_balancers/{name}/instances/{id}` deregisters one. Errors are JSON `{"error": "..."}`.

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
use crate::control::Control;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// What the admin endpoints read.
pub struct Admin {
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub dns_address: Option<SocketAddr>,
}

/// Serves the admin endpoints until shutdown.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut shutdown: Shutdown) {
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
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), segments.as_slice()) {
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
        (&Method::GET, ["metrics"]) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            admin.metrics.encode(),
        ),
        (&Method::POST, ["load_balancers", name, "instances"]) => {
            let name = name.to_string();
            register(admin, &name, request).await
        }
        (&Method::DELETE, ["load_balancers", name, "instances", id]) => {
            match admin.control.deregister(name, id) {
                Ok(true) => text(StatusCode::OK, "application/json", "{}"),
                Ok(false) => json_error(
                    StatusCode::NOT_FOUND,
                    format!("Instance {id} is not currently registered with the LoadBalancer."),
                ),
                Err(error) => json_error(StatusCode::NOT_FOUND, error),
            }
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {} {path}", request.method()),
        ),
    }
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
    let address: InstanceAddress = match registration.address.parse() {
        Ok(address) => address,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, format!("address: {error}")),
    };
    let resolved = match &address {
        InstanceAddress::Host { host, port } => {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(error) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot resolve {host}: {error}"),
                    )
                }
            }
        }
        _ => Vec::new(),
    };
    let instance = config::Instance {
        id: registration.instance_id,
        zone: registration.zone,
        address,
    };
    match admin.control.register(load_balancer, instance, resolved) {
        Ok(()) => text(StatusCode::OK, "application/json", "{}"),
        Err(error) => json_error(StatusCode::NOT_FOUND, error),
    }
}
