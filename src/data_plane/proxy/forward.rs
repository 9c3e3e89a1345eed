//! The Forward service, innermost: pick an instance (least outstanding requests, ELB-SPEC §3), wait in the surge
//! queue when every instance is at its limit (§8), take a pooled connection or open one, send, and turn every
//! failure into ELB's response (503, 502, 504, §9). A pooled connection closed under a request that is safe to
//! resend gets it once more on a fresh connection (DESIGN.md: the keep-alive race); with passive health checks a
//! request that never left elbe goes once to another instance.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::Guard;
use http::{Request, Response};
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::data_plane::back_end::error::BackendError;
use crate::data_plane::back_end::http1::{Exchange, InstanceTls, Outgoing, Resend};
use crate::data_plane::back_end::target::Target;
use crate::data_plane::body::RequestBody;
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::proxy::answer::elb_answer;
use crate::data_plane::proxy::context::{ConnectionFacts, Facts, ListenerContext};
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::proxy::rules;
use crate::data_plane::proxy::sticky::{Picked, Plan};
use crate::data_plane::routing::balancer;
use crate::data_plane::routing::surge::Outstanding;
use crate::data_plane::snapshot::NodeSnapshot;
pub(crate) use crate::http1::io::TimerSlot;
use crate::observability::access_log::Dispatched;

/// Sends the request to an instance and returns its response, or ELB's. Keeps what the stack knows of its
/// connection (the layers around it read it, [`Facts`]): the listener, the client (whose address rules'
/// `source_ip` matches) and the request timer between requests ([`RequestTimer`]).
#[derive(Clone)]
pub(crate) struct Forward {
    pub(super) facts: ConnectionFacts,
}

impl Facts for Forward {
    fn facts(&self) -> &ConnectionFacts {
        &self.facts
    }
}

impl<B: Into<RequestBody>> Service<Request<B>> for Forward {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let context = self.facts.context.clone();
        let routes = context.routes.load();
        // The listener's rules: a redirect or a fixed response is elbe's own answer.
        if !routes.rules.is_empty() {
            let peer = self.facts.client.ip();
            if let Some(answer) = rules::answer(&routes.rules, &request, peer, &context) {
                return Box::pin(std::future::ready(Ok(answer)));
            }
        }
        // A sticky listener: the instance the request's cookie names, if any, and the cookie for its response.
        let (first, plan) = if routes.stickiness.is_some() {
            let plan = Box::new(Plan::for_request(
                Guard::into_inner(routes),
                request.headers(),
            ));
            (first_pick(plan.snapshot(), plan.stuck.as_ref()), Some(plan))
        } else {
            (first_pick(&routes, None), None)
        };
        // Serialized now: the future then carries a few words instead of the whole request.
        let mut request = Outgoing::new(request.map(Into::into));
        // The instance's head goes on as received: written on to HTTP/1 clients, HPACK-encoded for HTTP/2 ones.
        request.raw_response = true;
        let timer = RequestTimer::take(&self.facts.timers);
        Box::pin(async move {
            let Some(first) = first else {
                return Ok(elb_answer(ElbResponse::NoInstance));
            };
            let mut response = forward(&context, request, timer, first, plan.is_some()).await;
            if let Some(plan) = plan {
                plan.respond(&mut response);
            }
            Ok(response)
        })
    }
}

/// The first instance a request goes to: the one its sticky cookie names (`stuck`), else the least busy of this
/// node's candidates; with the idle timeout the exchange runs under.
fn first_pick(
    routes: &NodeSnapshot,
    stuck: Option<&Arc<Target>>,
) -> Option<(Arc<Target>, Duration)> {
    let target = stuck.or_else(|| balancer::pick_least_outstanding(&routes.candidates))?;
    Some((target.clone(), routes.idle_timeout))
}

/// The idle timeout of one request, on a timer the connection's requests share in turn.
///
/// A timer made per request is registered with tokio's timer wheel and removed from it again, both under the
/// wheel's lock, and that measured as several percent of a request's work. A timer that is only ever moved *later*
/// is updated with one atomic operation, no lock: so each connection keeps one, a request takes it (or makes one
/// when the connection has several requests in flight, as HTTP/2 may), moves its deadline on, and gives it back
/// when done. The wheel sees such a timer about once per idle timeout.
struct RequestTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    home: TimerSlot,
}

impl RequestTimer {
    fn take(home: &TimerSlot) -> Self {
        RequestTimer {
            sleep: home.take(),
            home: home.clone(),
        }
    }

    /// Runs `future` until it completes (`Some`) or the deadline passes (`None`).
    ///
    /// `future` comes pinned by the caller: an `async fn` keeps a future it takes by value twice in its own state
    /// (the argument and the pinned local it moves into), and the exchange's future is most of a request's
    /// (`tests::a_requests_future_holds_its_exchange_once`).
    async fn run<F: Future>(
        &mut self,
        deadline: Instant,
        mut future: Pin<&mut F>,
    ) -> Option<F::Output> {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        // A slot already holding a timer (another request of the connection gave its back first) drops that
        // one: the connection keeps one either way.
        if let Some(sleep) = self.sleep.take() {
            self.home.store(Some(sleep));
        }
    }
}

/// `first`: the instance picked and the idle timeout; `sticky`: the listener has a stickiness policy, so the
/// instance that answers is reported in the response ([`Picked`]).
async fn forward(
    context: &ListenerContext,
    mut request: Outgoing,
    mut timer: RequestTimer,
    (mut target, idle_timeout): (Arc<Target>, Duration),
    sticky: bool,
) -> Response<ResponseBody> {
    if !context.surge.has_room(&target) {
        let deadline = Instant::now() + idle_timeout;
        match context
            .surge
            .wait_for_instance(&context.routes, &context.metrics, deadline)
            .await
        {
            Ok(free) => target = free,
            Err(kind) => return elb_answer(kind),
        }
    }
    let sent_at = Instant::now();
    // One idle timeout for the whole exchange, a retry on another instance included.
    let deadline = sent_at + idle_timeout;
    let mut retried = false;
    loop {
        let outstanding = Outstanding::begin(target.clone());
        let result = {
            let exchange = std::pin::pin!(send(&target, &context.instance_tls, request));
            timer.run(deadline, exchange).await
        };
        let failed = match result {
            Some(Ok((response, exchange))) => {
                context
                    .metrics
                    .latency
                    .observe(sent_at.elapsed().as_secs_f64());
                let (mut parts, ()) = response.into_parts();
                if sticky {
                    parts.extensions.insert(Picked(target.instance_id.clone()));
                }
                if context.access_log.is_some() {
                    parts.extensions.insert(Dispatched {
                        backend: target.addr,
                        request_sent: sent_at,
                        headers_received: Instant::now(),
                    });
                }
                return Response::from_parts(parts, ResponseBody::backend(exchange, outstanding));
            }
            Some(Err(failed)) => failed,
            None => {
                tracing::debug!(instance = %target.instance_id, "instance did not answer within the idle timeout");
                return elb_answer(ElbResponse::GatewayTimeout);
            }
        };
        drop(outstanding);
        tracing::debug!(instance = %target.instance_id, error = %failed.error, "request failed");
        if failed.error.is_connection_error() {
            context.metrics.backend_connection_errors.inc();
        }
        let Some(passive) = &context.passive else {
            return elb_answer(answer_for(&failed.error));
        };
        if failed.error.is_instance_failure() {
            passive.report(&target);
        }
        // A request that never left elbe goes once to another instance (passive health checks only).
        let other = {
            let routes = context.routes.load();
            balancer::pick_least_outstanding_except(&routes.candidates, &target).cloned()
        };
        match (retried, failed.unsent, other) {
            (false, Some(unsent), Some(other)) => {
                retried = true;
                request = unsent;
                target = other;
            }
            _ => return elb_answer(answer_for(&failed.error)),
        }
    }
}

/// A dispatch that failed, with the request given back when none of it left elbe.
struct Failed {
    error: BackendError,
    unsent: Option<Outgoing>,
}

impl From<BackendError> for Failed {
    fn from(error: BackendError) -> Self {
        Failed {
            error,
            unsent: None,
        }
    }
}

/// Sends on a pooled connection if one is alive, else on a new one. A request that a dead pooled connection took
/// none of goes on the next connection; one lost after sending is replayed once on a fresh connection when it is
/// body-less and idempotent (DESIGN.md: the keep-alive race behind many ELB 504s).
async fn send(
    target: &Target,
    tls: &InstanceTls,
    mut request: Outgoing,
) -> Result<(Response<()>, Box<Exchange>), Failed> {
    while let Some(conn) = target.pool.checkout(request.has_body(), tls) {
        let mut exchange = Box::new(Exchange::new(conn, request).watching(target.watch_cut()));
        let error = match exchange.response_head().await {
            Ok(response) => return Ok((response, exchange)),
            Err(error) => error,
        };
        match exchange.resend(&error) {
            Resend::Anywhere(unsent) => request = unsent,
            Resend::Once(unsent) => {
                tracing::debug!(%error, "pooled connection lost a request; replaying it once");
                request = unsent;
                break;
            }
            Resend::Never => return Err(error.into()),
        }
    }
    // Boxed: a new connection's future (TCP, and TLS to HTTPS instances) is larger than the rest of the exchange's,
    // and most requests take a pooled connection instead.
    let conn = match Box::pin(target.pool.connect(tls)).await {
        Ok(conn) => conn,
        Err(error) => {
            return Err(Failed {
                error,
                unsent: Some(request),
            })
        }
    };
    let mut exchange = Box::new(Exchange::new(conn, request).watching(target.watch_cut()));
    match exchange.response_head().await {
        Ok(response) => Ok((response, exchange)),
        Err(error) => {
            let unsent = match exchange.resend(&error) {
                Resend::Anywhere(unsent) => Some(unsent),
                Resend::Once(_) | Resend::Never => None,
            };
            Err(Failed { error, unsent })
        }
    }
}

/// ELB's response to a client whose request failed at the instance (ELB-SPEC.md §9). A refused connection is ELB's
/// 503: the instance cannot take the request, exactly as when none is healthy.
fn answer_for(error: &BackendError) -> ElbResponse {
    match error {
        BackendError::Connect { .. } | BackendError::ConnectTimeout { .. } => {
            ElbResponse::NoInstance
        }
        // ELB-SPEC §5: a request cut by deregistration (draining off, or past its timeout) gets 504.
        BackendError::Closed(_) | BackendError::Cut => ElbResponse::GatewayTimeout,
        // A failed TLS handshake with an HTTPS instance (it does not speak TLS, or fails `backend_ca`) is ELB's
        // 502: the load balancer reached the instance and could not use it.
        BackendError::BadResponse(_) | BackendError::Tls { .. } => ElbResponse::BadGateway,
        BackendError::ClientBody(_) => ElbResponse::BadRequest,
    }
}

/// The request timer on tokio's paused clock: one timer taken, moved to another task and given back in turn, as a
/// connection's requests share it.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::io::timer_slot;
    use std::pin::pin;
    use std::time::Duration;

    const IDLE_TIMEOUT: Duration = Duration::from_millis(300);

    /// Whether the slot holds a timer (taken out and put back).
    fn has_timer(home: &TimerSlot) -> bool {
        let sleep = home.take();
        let held = sleep.is_some();
        home.store(sleep);
        held
    }

    /// Takes the connection's timer, moves it to a task of its own (as a request's future is), and runs a request
    /// that never answers under it; returns when the timer fired, the timer given back on the task's end.
    async fn unanswered(home: &TimerSlot, deadline: Instant) -> Instant {
        let mut timer = RequestTimer::take(home);
        let request = tokio::spawn(async move {
            let answer = timer
                .run(deadline, pin!(std::future::pending::<()>()))
                .await;
            assert!(answer.is_none(), "a request that never answers");
            Instant::now()
        });
        request.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_taken_moved_and_given_back_fires_at_the_next_requests_deadline() {
        let home = timer_slot();
        let start = Instant::now();

        // A request answered in time: no wait, and the timer made for it goes home with its deadline unspent.
        let mut timer = RequestTimer::take(&home);
        let answer = timer.run(start + IDLE_TIMEOUT, pin!(async { 200 })).await;
        assert_eq!((answer, Instant::now()), (Some(200), start));
        drop(timer);
        assert!(has_timer(&home), "given back");

        // The next request, later: its deadline, not the first's.
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let deadline = Instant::now() + IDLE_TIMEOUT;
        assert_eq!(unanswered(&home, deadline).await, deadline);
        assert!(has_timer(&home), "given back from the request's task");

        // The timer has fired; taken again it waits out the new deadline, not firing at once.
        let deadline = Instant::now() + IDLE_TIMEOUT;
        let mut timer = RequestTimer::take(&home);
        assert!(!has_timer(&home), "the pooled timer is the one taken");
        let answer = timer
            .run(
                deadline,
                pin!(tokio::time::sleep(IDLE_TIMEOUT - Duration::from_millis(1))),
            )
            .await;
        assert_eq!(
            answer,
            Some(()),
            "answered a millisecond before the deadline"
        );
        drop(timer);

        // A deadline earlier than the one the timer was last set to.
        let deadline = Instant::now() + IDLE_TIMEOUT / 3;
        assert_eq!(unanswered(&home, deadline).await, deadline);
    }

    /// A request's future is allocated and moved whole into its box on every request, and holds the exchange's
    /// future (`send`) once: with `RequestTimer::run` taking it by value it was there twice, and a new connection's
    /// future inline beside it (2,200 bytes in a release build; 912 now, the exchange's 400 of them).
    #[test]
    fn a_requests_future_holds_its_exchange_once() {
        let metrics = crate::observability::metrics::Metrics::new();
        let context = crate::data_plane::proxy::context::test_support::context(&metrics);
        let mut forward = Forward {
            facts: crate::data_plane::proxy::context::test_support::facts(context),
        };
        let request = Request::get("/").body(RequestBody::Empty).unwrap();
        let future = forward.call(request);
        let bytes = std::mem::size_of_val(&*future);
        let exchange = std::mem::size_of_val(&send(
            &Target::stand_in("i-1", "127.0.0.1:1".parse().unwrap()),
            &None,
            Outgoing::new(Request::get("/").body(RequestBody::Empty).unwrap()),
        ));
        println!("a request's future: {bytes} bytes; the exchange's: {exchange}");
        // The rest (the request, the target, the timer, the plan and their copies the async blocks keep) is
        // about 500 bytes: an exchange held twice, or a connect beside it, cannot fit.
        assert!(
            bytes <= exchange + 600,
            "{bytes} bytes, the exchange's {exchange}"
        );
        assert!(bytes <= 1000, "{bytes} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_together_each_get_a_timer_and_the_connection_keeps_one() {
        let home = timer_slot();
        let (first, second) = (RequestTimer::take(&home), RequestTimer::take(&home));
        let start = Instant::now();
        let mut requests = Vec::new();
        for (mut timer, after) in [(first, IDLE_TIMEOUT), (second, IDLE_TIMEOUT / 2)] {
            requests.push(tokio::spawn(async move {
                timer
                    .run(start + after, pin!(std::future::pending::<()>()))
                    .await;
                Instant::now() - start
            }));
        }
        let mut fired = Vec::new();
        for request in requests {
            fired.push(request.await.unwrap());
        }
        assert_eq!(fired, [IDLE_TIMEOUT, IDLE_TIMEOUT / 2]);
        assert!(
            has_timer(&home),
            "one kept, the other dropped: a connection keeps one timer"
        );
    }
}
