//! The ELB API (2012-06-01) on the admin listener: the AWS Query protocol, so `aws elb … --endpoint-url
//! http://<admin>/` and the SDKs work unchanged (DESIGN.md "The ELB API"; ELB-SPEC §13; issue 15).
//!
//! A call is `POST /` with form-encoded parameters (or `GET /?Action=…`). It is read in the order the bytes
//! flow: the body, bounded ([`MAX_BODY`]); the signature, when `[api]` has keys (`sigv4`); the parameters
//! (`query`) and the action with its typed request (`action`); the answer, written as ELB's XML (`xml`), or
//! ELB's error document (`error`).
//!
//! Reads (the Describe actions) answer from the control plane's state as it runs. Registrations go through
//! `Control`'s own methods, as the admin JSON endpoints and the test harness do (`instances`). Every other
//! change is a plan (`apply`): the action's module (`creation`, `listeners`, `zones`, `health_check`,
//! `attributes`, `policies`, `tags`) decides the records to write from what runs, and the server stages, keeps
//! and commits them as a reload does, so what the API changes moves traffic before the call is answered and
//! survives a restart. Without access keys every call is accepted, signed or not, as moto and LocalStack do;
//! [`Api::new`] logs that once at start.
//!
//! Trade-off: the API holds the server weakly, through the [`Apply`] trait, so it does not know the server (no
//! import cycle) and a call after shutdown began is `ServiceUnavailable`, not a panic.

mod action;
mod apply;
mod attributes;
mod creation;
mod error;
mod health_check;
mod instances;
mod listeners;
mod load_balancers;
mod policies;
mod query;
mod sigv4;
mod tags;
mod timestamp;
mod xml;
mod zones;

pub(crate) use apply::{Apply, Plan, View};
pub(crate) use error::ApiError;

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::config;
use crate::control_plane::control::Control;
use action::Call;
use load_balancers::Origins;
use query::Params;

/// The largest body a call may have: DescribeLoadBalancers with 400 names or a registration of 1,000
/// instances is well under it.
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// The query-string parameters of a presigned call that are its signature, not the action's.
const SIGNING_PARAMETERS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// What the API needs beside the control plane: `[api]`, the `[[instance]]` catalogue, when it started, and
/// where changes are applied.
pub(crate) struct Api {
    config: config::Api,
    catalogue: Vec<config::Instance>,
    /// The `CreatedTime` of the file's load balancers: when elbe started serving them.
    started: SystemTime,
    /// The server, which stages, keeps and commits what a call changes (`api/apply`); gone once it stopped.
    changes: Weak<dyn Apply>,
}

impl Api {
    /// The API for a validated configuration; says in the log when calls go unauthenticated.
    pub(crate) fn new(config: &config::Config, changes: Weak<dyn Apply>) -> Self {
        if config.api.credentials.is_none() {
            tracing::warn!(
                "ELB API: no [api] access keys configured, so every call is accepted whatever its signature \
                 (set access_key_id and secret_access_key to require AWS Signature Version 4)"
            );
        }
        Api {
            config: config.api.clone(),
            catalogue: config.instances.clone(),
            started: SystemTime::now(),
            changes,
        }
    }

    /// Whether a request to the admin listener is an API call: `POST /`, or `GET /` with an `Action` (a plain
    /// `GET /` is the status page).
    pub(crate) fn is_call(method: &Method, uri: &http::Uri) -> bool {
        if uri.path() != "/" {
            return false;
        }
        let has_action = || {
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .any(|(key, _)| key == "Action")
        };
        *method == Method::POST || (*method == Method::GET && has_action())
    }

    /// Answers one call: ELB's XML with status 200, or ELB's error document with the error's status.
    pub(crate) async fn answer<B>(
        &self,
        control: &Arc<Control>,
        request: Request<B>,
    ) -> Response<Full<Bytes>>
    where
        B: http_body::Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let request_id = xml::request_id();
        let result = self.call(control, request, &request_id).await;
        let (status, body) = match result {
            Ok(body) => (StatusCode::OK, body),
            Err(error) => {
                tracing::debug!(code = error.code, message = %error.message, "ELB API call refused");
                (error.status, xml::error(&error, &request_id))
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/xml"),
        );
        if let Ok(value) = http::HeaderValue::from_str(&request_id) {
            headers.insert("x-amzn-requestid", value);
        }
        response
    }

    /// Reads, authenticates, decodes and runs a call; the XML of its answer.
    async fn call<B>(
        &self,
        control: &Arc<Control>,
        request: Request<B>,
        request_id: &str,
    ) -> Result<String, ApiError>
    where
        B: http_body::Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(
                |error| match error.downcast::<http_body_util::LengthLimitError>() {
                    Ok(_) => ApiError::too_large(MAX_BODY),
                    Err(error) => ApiError::unreadable_body(error),
                },
            )?
            .to_bytes();
        if let Some(credentials) = &self.config.credentials {
            let verifier = sigv4::Verifier {
                access_key_id: &credentials.access_key_id,
                secret_access_key: &credentials.secret_access_key,
                region: &self.config.region,
                service: sigv4::SERVICE,
            };
            let signed = sigv4::SignedRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                authority: parts.uri.authority().map(|a| a.as_str()),
                body: &body,
            };
            verifier.verify(&signed, SystemTime::now())?;
        }
        let mut params = Params::from_form(parts.uri.query().unwrap_or("").as_bytes())?;
        if parts.method == Method::POST {
            params.add_form(&body)?;
        }
        for name in SIGNING_PARAMETERS {
            params.optional(name);
        }
        let call = action::decode(&mut params)?;
        params.finish()?;
        self.run(control, &call, request_id).await
    }

    /// Runs a decoded call against the control plane.
    async fn run(
        &self,
        control: &Arc<Control>,
        call: &Call,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut out = xml::Xml::default();
        match call {
            Call::RegisterInstances(request) => {
                instances::register(control, &self.catalogue, request, &mut out).await?
            }
            Call::DeregisterInstances(request) => {
                instances::deregister(control, request, &mut out).await?
            }
            _ => match self.read(control, call, &mut out) {
                Some(answered) => answered?,
                None => self.change(control, call, &mut out).await?,
            },
        }
        Ok(xml::response(call.action(), request_id, |xml| {
            xml.append(out)
        }))
    }

    /// Answers a call that changes nothing; `None` for one that changes something.
    fn read(
        &self,
        control: &Arc<Control>,
        call: &Call,
        out: &mut xml::Xml,
    ) -> Option<Result<(), ApiError>> {
        let is_read = matches!(
            call,
            Call::DescribeLoadBalancers(_)
                | Call::DescribeInstanceHealth(_)
                | Call::DescribeLoadBalancerAttributes { .. }
                | Call::DescribePolicies(_)
                | Call::DescribePolicyTypes { .. }
                | Call::DescribeTags { .. }
        );
        is_read.then(|| self.answer_read(control, call, out))
    }

    fn answer_read(
        &self,
        control: &Arc<Control>,
        call: &Call,
        out: &mut xml::Xml,
    ) -> Result<(), ApiError> {
        let described = control.described();
        let find = |name: &str| instances::find(&described, name).map(|(lb, _)| lb);
        {
            match call {
                Call::DescribeLoadBalancers(request) => {
                    let records = control.records();
                    let origins = Origins {
                        records: &records,
                        started: self.started,
                        certificates: &self.config.certificates,
                    };
                    load_balancers::describe(&described, request, &origins, out)?
                }
                Call::DescribeInstanceHealth(request) => {
                    instances::describe_health(&described, &self.catalogue, request, out)?
                }
                Call::DescribeLoadBalancerAttributes { load_balancer } => {
                    attributes::write(find(load_balancer)?, out)
                }
                Call::DescribePolicies(request) => {
                    let lb = request.load_balancer.as_deref().map(find).transpose()?;
                    policies::describe(lb, request, out)?
                }
                Call::DescribePolicyTypes { names } => policies::describe_types(names, out)?,
                Call::DescribeTags { load_balancers } => {
                    let running: Vec<String> =
                        described.iter().map(|(lb, _)| lb.name.clone()).collect();
                    tags::describe(&running, &control.records(), load_balancers, out)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Plans, applies and answers a call that changes something.
    async fn change(
        &self,
        control: &Arc<Control>,
        call: &Call,
        out: &mut xml::Xml,
    ) -> Result<(), ApiError> {
        let changes = self
            .changes
            .upgrade()
            .ok_or_else(|| ApiError::service_unavailable("elbe is shutting down"))?;
        let owned = call.clone();
        let plan: Plan = Box::new(move |view: &View<'_>| plan(view, &owned));
        changes.apply(plan).await?;
        tracing::info!(action = call.action(), "ELB API change applied");
        let described = control.described();
        let find = |name: &str| instances::find(&described, name).map(|(lb, _)| lb);
        match call {
            Call::CreateLoadBalancer(request) => {
                // The name it runs under (an idempotent repeat may name the file's, in its own region).
                let (_, status) = instances::find(&described, &request.name)?;
                out.text("DNSName", &status.dns_name);
            }
            Call::ConfigureHealthCheck(request) => health_check::write(&request.check, out),
            Call::ModifyLoadBalancerAttributes(request) => {
                attributes::write_modified(find(&request.given.load_balancer)?, request, out)
            }
            Call::EnableZones(request) | Call::DisableZones(request) => {
                zones::write(find(&request.load_balancer)?, out)
            }
            _ => {}
        }
        Ok(())
    }
}

/// The changes a call makes to what runs (`api/apply`).
fn plan(
    view: &View<'_>,
    call: &Call,
) -> Result<Vec<crate::control_plane::store::Change>, ApiError> {
    match call {
        Call::CreateLoadBalancer(request) => creation::plan_create(view, request),
        Call::DeleteLoadBalancer { load_balancer } => creation::plan_delete(view, load_balancer),
        Call::CreateListeners(request) => listeners::plan_create(view, request),
        Call::DeleteListeners(request) => listeners::plan_delete(view, request),
        Call::ConfigureHealthCheck(request) => health_check::plan(view, request),
        Call::ModifyLoadBalancerAttributes(request) => attributes::plan_modify(view, request),
        Call::EnableZones(request) => zones::plan_enable(view, request),
        Call::DisableZones(request) => zones::plan_disable(view, request),
        Call::CreatePolicy(_, request) => policies::plan_create(view, request),
        Call::DeletePolicy {
            load_balancer,
            name,
        } => policies::plan_delete(view, load_balancer, name),
        Call::SetListenerPolicies(request) => policies::plan_set_of_listener(view, request),
        Call::SetBackendPolicies(request) => policies::plan_set_for_backend(view, request),
        Call::AddTags(request) => tags::plan_add(view, request),
        Call::RemoveTags(request) => tags::plan_remove(view, request),
        _ => Ok(Vec::new()),
    }
}

/// The decoder alone (parameters, action, typed request), for `fuzz_support`: the call's `Debug` text, or the
/// refusal's code and HTTP status.
pub(crate) fn decode_form(form: &[u8]) -> Result<String, (&'static str, u16)> {
    let decoded = || -> Result<String, ApiError> {
        let mut params = Params::from_form(form)?;
        let call = action::decode(&mut params)?;
        params.finish()?;
        Ok(format!("{call:?}"))
    };
    decoded().map_err(|error| (error.code, error.status.as_u16()))
}

/// The list and map readers alone, for `fuzz_support`: the members of `list` (each member's fields, `""` for
/// a plain value) and the entries of `map`, or the refusal's code.
#[allow(clippy::type_complexity)]
pub(crate) fn decode_lists(
    form: &[u8],
    list: &str,
    map: &str,
) -> Result<(Vec<Vec<(String, String)>>, Vec<(String, String)>), &'static str> {
    let decoded = || -> Result<_, ApiError> {
        let mut params = Params::from_form(form)?;
        let members = params
            .members(list)?
            .into_iter()
            .map(Params::into_pairs)
            .collect();
        let entries = params.entries(map)?;
        Ok((members, entries))
    };
    decoded().map_err(|error| error.code)
}

#[cfg(test)]
mod tests;
