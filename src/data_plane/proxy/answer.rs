//! ELB's own responses as the stack makes them: built in one function, marked so they are counted and written
//! as ELB's ([`crate::data_plane::elb_response`] has the rule).

use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::Response;
use hyper::ext::ReasonPhrase;

use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::proxy::response_body::ResponseBody;

/// Marks a response elbe made itself, so it is counted as `HTTPCode_ELB_*`, not `HTTPCode_Backend_*`, and written
/// as ELB writes it ([`ElbResponse::http1_bytes`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ElbGenerated(pub ElbResponse);

/// Marks a request the HTTP/1 server refused before it could be made into a request (a head that does not parse,
/// is too large, or did not arrive in time): the stack answers it with ELB's response, counts it and logs it
/// (`"- - - "` for the request), exactly as it does the requests it refuses itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused(pub ElbResponse);

/// ELB's own response (ELB-SPEC.md §9), whoever detected the condition: empty body, `Content-Length: 0`, ELB's
/// reason phrase (HTTP/1.x only; HTTP/2 has none), marked [`ElbGenerated`].
pub(crate) fn elb_answer(kind: ElbResponse) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = kind.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let connection = if kind.closes_connection() {
        "close"
    } else {
        "keep-alive"
    };
    headers.insert(CONNECTION, HeaderValue::from_static(connection));
    let extensions = response.extensions_mut();
    extensions.insert(ReasonPhrase::from_static(kind.reason().as_bytes()));
    extensions.insert(ElbGenerated(kind));
    response
}
