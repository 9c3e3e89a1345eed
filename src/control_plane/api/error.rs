//! ELB's errors as the API answers them: a code, an HTTP status and a message (ELB-SPEC §13.2), and the one
//! function that turns them into the error document.
//!
//! Rule: every code is one ELB or the AWS Query protocol documents. ELB-SPEC §13.2 lists ELB's own (all 400
//! `Sender` except `InvalidConfigurationRequest`, 409); the protocol's common ones come from AWS's "Common
//! Errors" reference: `MissingAction`, `MissingParameter`, `InvalidAction`, `ValidationError`,
//! `IncompleteSignature` and `RequestExpired` are 400, `MissingAuthenticationToken` and
//! `InvalidClientTokenId` 403; `SignatureDoesNotMatch` is 403 as every AWS signer reports it.
//!
//! Trade-off: the code is a `&'static str`, not an enum: the list is ELB's and grows with every action, and
//! each constructor below is the one place its status and wording are decided.

use http::StatusCode;

/// One error answer: what botocore reads from `<Error><Code>` and `<Message>`, and the HTTP status.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ApiError {
    /// ELB's error code (`LoadBalancerNotFound`, `ValidationError`, ...).
    pub code: &'static str,
    /// The HTTP status ELB answers the code with.
    pub status: StatusCode,
    /// The message, in ELB's words where they are known (ELB-SPEC §13.2).
    pub message: String,
    /// What inside elbe refused the call, when it was not the decoder (a control-plane error).
    #[source]
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status,
            message: message.into(),
            cause: None,
        }
    }

    /// Keeps what caused the error (its message is already in `message`).
    pub(crate) fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// `Sender` for the caller's mistakes (4xx), `Receiver` for elbe's own (5xx), as AWS's error documents say.
    pub(crate) fn fault(&self) -> &'static str {
        if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    }

    /// No `Action` parameter at all.
    pub(crate) fn missing_action() -> Self {
        Self::new(
            "MissingAction",
            StatusCode::BAD_REQUEST,
            "The request must contain the parameter Action",
        )
    }

    /// A required parameter is absent.
    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            StatusCode::BAD_REQUEST,
            format!("The request must contain the parameter {name}"),
        )
    }

    /// An action ELB does not have, or one of a version elbe does not speak.
    pub(crate) fn invalid_action(action: &str, version: &str) -> Self {
        Self::new(
            "InvalidAction",
            StatusCode::BAD_REQUEST,
            format!("Could not find operation {action} for version {version}"),
        )
    }

    /// An action of ELB's API that elbe does not answer (subnets, security groups, account limits: what an
    /// EC2-Classic load balancer on one machine does not have).
    pub(crate) fn not_implemented(action: &str) -> Self {
        Self::new(
            "InvalidAction",
            StatusCode::BAD_REQUEST,
            format!("{action} is an ELB action elbe does not implement yet"),
        )
    }

    /// The input breaks a rule of the protocol or of the action (an unknown parameter, a list with a gap).
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationError", StatusCode::BAD_REQUEST, message)
    }

    /// The body is larger than the API reads (a Query call is a few kilobytes).
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            "RequestEntityTooLarge",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than {limit} bytes"),
        )
    }

    /// The body could not be read to its end (the client went away, or sent a broken chunked body).
    pub(crate) fn unreadable_body(cause: Box<dyn std::error::Error + Send + Sync>) -> Self {
        let mut error = Self::new(
            "ValidationError",
            StatusCode::BAD_REQUEST,
            format!("The request body could not be read: {cause}"),
        );
        error.cause = Some(cause);
        error
    }

    /// ELB's `LoadBalancerNotFound` in the wording of most actions (ELB-SPEC §13.2).
    pub(crate) fn load_balancer_not_found(name: &str) -> Self {
        Self::new(
            "LoadBalancerNotFound",
            StatusCode::BAD_REQUEST,
            format!("There is no ACTIVE Load Balancer named '{name}'"),
        )
    }

    /// ELB's `LoadBalancerNotFound` in DescribeLoadBalancers' wording (ELB-SPEC §13.2).
    pub(crate) fn cannot_find_load_balancer(name: &str) -> Self {
        Self::new(
            "LoadBalancerNotFound",
            StatusCode::BAD_REQUEST,
            format!("Cannot find Load Balancer {name}"),
        )
    }

    /// ELB's `InvalidInstance`: an id that names no instance (ELB-SPEC §13.2's wording).
    pub(crate) fn unknown_instance(id: &str) -> Self {
        Self::new(
            "InvalidInstance",
            StatusCode::BAD_REQUEST,
            format!("Could not find EC2 instance {id}."),
        )
    }

    /// ELB's `InvalidInstance` for a catalogue instance whose `host:port` does not resolve.
    pub(crate) fn invalid_instance_address(id: &str, why: &str) -> Self {
        Self::new(
            "InvalidInstance",
            StatusCode::BAD_REQUEST,
            format!("The address of EC2 instance {id} does not resolve: {why}"),
        )
    }

    /// ELB's `InvalidInstance` for deregistering an instance the load balancer does not have.
    pub(crate) fn not_registered(id: &str, load_balancer: &str) -> Self {
        Self::new(
            "InvalidInstance",
            StatusCode::BAD_REQUEST,
            format!("The instance {id} is not registered with the LoadBalancer {load_balancer}."),
        )
    }

    /// No signature at all, while keys are configured.
    pub(crate) fn missing_authentication_token() -> Self {
        Self::new(
            "MissingAuthenticationToken",
            StatusCode::FORBIDDEN,
            "Request is missing Authentication Token",
        )
    }

    /// A signature whose parts cannot be read (`Authorization` without `Signature=`, a bad date).
    pub(crate) fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::new("IncompleteSignature", StatusCode::BAD_REQUEST, message)
    }

    /// A key id elbe does not know.
    pub(crate) fn invalid_client_token_id() -> Self {
        Self::new(
            "InvalidClientTokenId",
            StatusCode::FORBIDDEN,
            "The security token included in the request is invalid.",
        )
    }

    /// A signature that is not the one the configured secret makes, or is scoped elsewhere.
    pub(crate) fn signature_does_not_match(message: impl Into<String>) -> Self {
        Self::new("SignatureDoesNotMatch", StatusCode::FORBIDDEN, message)
    }

    /// A signature dated more than 15 minutes from elbe's clock.
    pub(crate) fn request_expired(message: impl Into<String>) -> Self {
        Self::new("RequestExpired", StatusCode::BAD_REQUEST, message)
    }

    /// The change could not be made durable (the state store refused the write): nothing changed, the caller may
    /// retry. 503 `ServiceUnavailable`, AWS's answer when it cannot take a call now (DESIGN.md: the same code
    /// when the cluster's etcd is unreachable).
    pub(crate) fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            "ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            message,
        )
    }

    /// ELB's `InvalidConfigurationRequest` (409): the change cannot be made as asked (a port that cannot be
    /// bound, the last zone disabled, a policy still in use).
    pub(crate) fn invalid_configuration(message: impl Into<String>) -> Self {
        Self::new("InvalidConfigurationRequest", StatusCode::CONFLICT, message)
    }

    /// One of ELB's own 400 `Sender` codes of ELB-SPEC §13.2 (`DuplicateListener`, `PolicyNotFound`, ...), with
    /// its message.
    pub(crate) fn elb(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, StatusCode::BAD_REQUEST, message)
    }
}
