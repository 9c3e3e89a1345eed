//! elbe's HTTP/1.x server: one client connection (a "front-end connection" in ELB's terms), its requests read and
//! its responses written by elbe itself.
//!
//! Why not hyper's server: per request it parses the head into its own structures, runs a dispatcher between the
//! socket and the service, passes request bodies over a channel, and elbe had to wrap the socket to see framing
//! hyper repairs out of sight and to start ELB's idle timer (a task wake-up per request). Measured with callgrind,
//! that was two fifths of elbe's user-space instructions per request (BENCHMARKS.md). Here the connection's task
//! reads a head ([`request`]), hands the request to the tower stack ([`crate::data_plane::proxy::stack`]) and writes
//! the response as its body arrives ([`response`]): a keep-alive request costs one read and one write on the
//! client's socket.
//!
//! The connection is a state machine ([`Stage`]): reading a head, waiting for the stack, writing the response,
//! closing, lingering. Pipelined requests are answered in order. ELB's timers run on one lazy timer: a
//! connection that sends nothing within the request-header timeout is closed, a request head that does not
//! complete within it gets ELB's 408, a keep-alive connection idle for the idle timeout is closed, and a streaming
//! response that makes no progress for the idle timeout is cut. A connection that starts with the HTTP/2 preface
//! is handed back ([`Served::Http2`]) for elbe's HTTP/2 server, with the bytes already read.

mod exchange;
pub(crate) mod request;
mod response;
mod settings;
#[cfg(test)]
mod tests;

pub(crate) use settings::Settings;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use tokio::time::Instant;
use tower::Service;

use crate::data_plane::body::RequestBody;
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::proxy::{Facts, Refused};
use crate::data_plane::tunnel::Tunnel;
use crate::http1::buffers;
use crate::http1::io::{poll_writev, LazyTimer, Stream};
use exchange::{Exchange, Stage, Tunneling};
use request::{Current, Fed, HeadLimits};
use response::Moved;

pub(crate) use crate::http1::io::Stream as ClientStream;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a closing connection that may have unread request bytes keeps reading (and discarding) them after
/// its last response, so the kernel does not answer them with a reset that could destroy that response.
const LINGER: Duration = Duration::from_secs(2);

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// Closed, by either side.
    Closed,
    /// The client spoke the HTTP/2 preface: the socket and what was read from it ([`Connection::into_parts`])
    /// are for an HTTP/2 server.
    Http2,
}

/// Which wait the connection's timer is timing while no request is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A new connection that has sent nothing yet.
    Fresh,
    /// Part of a request head has arrived.
    Head,
    /// Keep-alive between requests.
    Idle,
    /// A response is streaming and waits for its instance or for the client (ELB's idle timeout covers both).
    Respond,
    /// A request is in flight (the proxy times it), or the connection is lingering.
    None,
}

/// What the loop does next.
enum Step {
    Continue,
    Closed,
    Http2,
}

/// One HTTP/1.x client connection, served until it closes.
///
/// What only a request in flight needs is an [`Exchange`], boxed while there is one: an idle keep-alive
/// connection (most of the open ones) carries its socket, its stack, its timer and its settings, and a pointer
/// (BENCHMARKS.md "Idle connections").
pub(crate) struct Connection<IO, S: Service<Request<RequestBody>>> {
    io: IO,
    read_buf: BytesMut,
    service: S,
    /// Made when a request head is read (or the connection closes), dropped when the connection waits for the
    /// next request with nothing read and nothing queued ([`Self::release_buffers`]); kept while requests come
    /// back to back.
    exchange: Option<Box<Exchange<S::Future>>>,
    settings: Settings,
    wait: Wait,
    /// Its sleep goes to the stack's timer slot ([`Facts`]) while a request is with the stack, whose request
    /// timer uses it: one sleep per connection, not one for each ([`LazyTimer::lend`]).
    timer: LazyTimer,
    shutting_down: bool,
    /// No HTTP/1 request has been read yet: the connection may still turn out to be HTTP/2 (prior knowledge).
    fresh: bool,
}

impl<IO, S> Connection<IO, S>
where
    IO: Stream,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Facts,
    S::Future: Unpin,
{
    /// The connection's metrics and the slot its timer lends its sleep to are the stack's ([`Facts`]): kept
    /// once, there.
    pub(crate) fn new(io: IO, service: S, settings: Settings) -> Self {
        Connection {
            io,
            // Taken when the client's first bytes arrive ([`Self::release_buffers`]).
            read_buf: BytesMut::new(),
            service,
            exchange: None,
            settings,
            wait: Wait::Fresh,
            timer: LazyTimer::new(Instant::now() + Duration::from(settings.request_header_timeout)),
            shutting_down: false,
            fresh: true,
        }
    }

    /// Stops taking requests: the response in progress finishes (with `Connection: close`), then the connection
    /// closes; an idle one closes now.
    pub(crate) fn graceful_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Serves the connection; the output says how it ended.
    pub(crate) fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Served>> {
        loop {
            if let Err(error) = self.poll_feed(cx) {
                // The client's socket failed under the body: the body has been told; nothing more to say.
                return Poll::Ready(Err(error));
            }
            let step = match self
                .exchange
                .as_deref_mut()
                .map(|exchange| &mut exchange.stage)
            {
                None | Some(Stage::Head) => self.poll_head(cx),
                Some(Stage::Call(future)) => match Pin::new(future).poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        self.start_response(response);
                        Poll::Ready(Ok(Step::Continue))
                    }
                    Poll::Pending => Poll::Pending,
                },
                Some(Stage::Respond(_)) => self.poll_respond(cx),
                Some(Stage::Close { linger }) => {
                    let linger = *linger;
                    self.poll_close(cx, linger)
                }
                Some(Stage::Linger) => self.poll_linger(cx),
                Some(Stage::Tunnel(_)) => self.poll_tunnel(cx),
            };
            match step {
                Poll::Ready(Ok(Step::Continue)) => {}
                Poll::Ready(Ok(Step::Closed)) => return Poll::Ready(Ok(Served::Closed)),
                Poll::Ready(Ok(Step::Http2)) => return Poll::Ready(Ok(Served::Http2)),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    // Whatever the stage waits for, queued bytes (a 100 Continue) go out meanwhile.
                    if self.queued() {
                        match self.poll_write_out(cx) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                            Poll::Pending => {}
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Bytes wait to be written.
    fn queued(&self) -> bool {
        self.exchange
            .as_ref()
            .is_some_and(|exchange| !exchange.out.is_empty())
    }

    fn set_stage(&mut self, stage: Stage<S::Future>) {
        Exchange::of(&mut self.exchange).stage = stage;
    }

    /// Gives up the socket and what was read from it (after `Served::Http2`).
    pub(crate) fn into_parts(self) -> (IO, Bytes, S) {
        (self.io, self.read_buf.freeze(), self.service)
    }

    /// The stack requests go through.
    pub(crate) fn service(&self) -> &S {
        &self.service
    }

    // -----------------------------------------------------------------------------------------------------------
    // Reading requests

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        loop {
            if !self.read_buf.is_empty() {
                if self.fresh && self.read_buf.len() >= 3 && self.read_buf.starts_with(b"PRI") {
                    let n = self.read_buf.len().min(H2_PREFACE.len());
                    if self.read_buf[..n] == H2_PREFACE[..n] {
                        if n == H2_PREFACE.len() {
                            return Poll::Ready(Ok(Step::Http2));
                        }
                        // Part of the preface: read on.
                    } else {
                        self.fresh = false;
                        continue;
                    }
                } else {
                    let limits = HeadLimits {
                        max_head_bytes: self.settings.max_head_bytes as usize,
                        max_headers: self.settings.max_headers as usize,
                        max_uri_bytes: self.settings.max_uri_bytes as usize,
                    };
                    match request::parse(&mut self.read_buf, limits) {
                        Ok(Some(head)) => {
                            self.fresh = false;
                            self.wait = Wait::None;
                            self.timer.lend(&self.service.facts().timers);
                            let call = self.service.call(head.request);
                            let exchange = Exchange::of(&mut self.exchange);
                            exchange.current = head.current;
                            exchange.feed = head.feed;
                            exchange.stage = Stage::Call(call);
                            return Poll::Ready(Ok(Step::Continue));
                        }
                        Err(kind) => {
                            self.fresh = false;
                            self.wait = Wait::None;
                            self.refuse(kind);
                            return Poll::Ready(Ok(Step::Continue));
                        }
                        Ok(None) => {}
                    }
                }
                if self.wait != Wait::Head {
                    self.start_wait(Wait::Head);
                }
            } else if self.shutting_down {
                self.set_stage(Stage::Close { linger: false });
                return Poll::Ready(Ok(Step::Continue));
            } else if self.io.poll_readable(cx)?.is_pending() {
                // Between requests, nothing sent: wait holding no buffer.
                self.release_buffers();
                return self.poll_wait(cx);
            }
            request::reserve_read(&mut self.read_buf);
            match self.io.poll_fill(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Step::Closed)),
                Poll::Ready(Ok(n)) => self.count_received(n),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    if self.read_buf.is_empty() {
                        // A stream whose readiness could not tell (TLS whose record is still partial).
                        self.release_buffers();
                    }
                    return self.poll_wait(cx);
                }
            }
        }
    }

    /// `n` bytes read from the client, in `elbe_received_bytes_total`.
    fn count_received(&self, n: usize) {
        let metrics = &self.service.facts().context.metrics;
        metrics.received_bytes.inc_by(n as u64);
    }

    /// Gives up the read buffer and the exchange (with its write queue's room) while the connection waits for a
    /// request with nothing read: an idle keep-alive connection then costs its task, its socket and its timer,
    /// not 8 KiB of buffer and a request's state (`../shared/bench/idle_conns.sh`, BENCHMARKS.md "Idle
    /// connections"). The buffer goes to the worker's pool for the next connection whose client sends
    /// ([`buffers::give_back`]); one a large body grew is freed. An exchange with bytes still queued (a 100
    /// Continue, a response's tail) or a body still fed stays.
    fn release_buffers(&mut self) {
        buffers::give_back(&mut self.read_buf);
        if let Some(exchange) = &mut self.exchange {
            if exchange.out.is_empty() && exchange.feed.is_none() {
                self.exchange = None;
            } else {
                exchange.out.release();
            }
        }
    }

    /// Moves the request body along when it has asked for more (see [`request::Feed::poll`]).
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(exchange) = self.exchange.as_deref_mut() else {
            return Ok(());
        };
        let Some(feed) = &mut exchange.feed else {
            return Ok(());
        };
        let received = &self.service.facts().context.metrics.received_bytes;
        match feed.poll(
            cx,
            &mut self.io,
            &mut self.read_buf,
            &mut exchange.out,
            received,
        ) {
            Fed::Going => {}
            Fed::Ended => exchange.feed = None,
            Fed::Failed => {
                exchange.feed = None;
                exchange.current.close = true;
            }
            Fed::SocketFailed(error) => {
                exchange.feed = None;
                return Err(error);
            }
        }
        Ok(())
    }

    /// A request elbe refuses before it is one (a head that does not parse, is too large or did not arrive in
    /// time): the stack answers it, counts it and logs it, like the requests it refuses itself ([`Refused`]);
    /// then the connection closes.
    fn refuse(&mut self, kind: ElbResponse) {
        self.read_buf.clear();
        let mut request = Request::new(RequestBody::Empty);
        request.extensions_mut().insert(Refused(kind));
        self.timer.lend(&self.service.facts().timers);
        let call = self.service.call(request);
        let exchange = Exchange::of(&mut self.exchange);
        exchange.current = Current {
            close: true,
            unread: true,
            ..Current::default()
        };
        exchange.stage = Stage::Call(call);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Timers

    fn start_wait(&mut self, wait: Wait) {
        self.wait = wait;
        let after = match wait {
            Wait::Idle | Wait::Respond => self.settings.idle_timeout,
            Wait::Fresh | Wait::Head => self.settings.request_header_timeout,
            Wait::None => return,
        };
        self.timer.set(Instant::now() + Duration::from(after));
    }

    /// Called when a read would block: the wait in progress ends when its deadline passes.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        if self.wait == Wait::None {
            return Poll::Pending;
        }
        ready!(self.poll_timer(cx));
        Poll::Ready(Ok(self.expire()))
    }

    /// The connection's timer, its sleep taken back from the stack first if it was lent to a request.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.reclaim(&self.service.facts().timers);
        self.timer.poll_expired(cx)
    }

    fn expire(&mut self) -> Step {
        let stalled_head = self.wait == Wait::Head;
        self.wait = Wait::None;
        if stalled_head {
            // ELB's 408; then close, discarding the rest of the head.
            self.refuse(ElbResponse::RequestTimeout);
        } else {
            self.set_stage(Stage::Close { linger: false });
        }
        Step::Continue
    }

    /// A streaming response waits (for its instance's next bytes, or for the client to take more): after the idle
    /// timeout without progress the connection is dropped, as ELB drops a connection idle in either direction.
    /// Dropped, not closed gracefully: a client that stopped reading would hold up a graceful close forever.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        if self.wait != Wait::Respond {
            self.start_wait(Wait::Respond);
            let exchange = Exchange::of(&mut self.exchange);
            exchange.progress_mark = exchange.progress;
        }
        loop {
            ready!(self.poll_timer(cx));
            let exchange = Exchange::of(&mut self.exchange);
            if exchange.progress == exchange.progress_mark {
                tracing::debug!(
                    "response idle for the idle timeout; dropping the client connection"
                );
                return Poll::Ready(Ok(Step::Closed));
            }
            exchange.progress_mark = exchange.progress;
            self.timer
                .set(Instant::now() + Duration::from(self.settings.idle_timeout));
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Writing responses

    fn start_response(&mut self, response: Response<ResponseBody>) {
        let exchange = Exchange::of(&mut self.exchange);
        let responding = response::start(
            response,
            &mut exchange.current,
            self.shutting_down,
            &mut exchange.out,
        );
        exchange.stage = Stage::Respond(responding);
    }

    fn poll_respond(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        let Some(exchange) = self.exchange.as_deref_mut() else {
            return Poll::Ready(Ok(Step::Continue));
        };
        let Stage::Respond(responding) = &mut exchange.stage else {
            return Poll::Ready(Ok(Step::Continue));
        };
        let moved = responding.poll_move(cx, &mut exchange.out, &mut exchange.progress);
        if moved == Moved::Failed {
            exchange.stage = Stage::Close { linger: false };
            return Poll::Ready(Ok(Step::Continue));
        }
        let ended = responding.ended();
        match self.poll_write_out(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return self.poll_stalled(cx),
        }
        if ended {
            if !self.switch_to_tunnel() {
                self.end_response();
            }
        } else if moved == Moved::Waiting {
            // All written; the body wakes the task when it has more.
            return self.poll_stalled(cx);
        }
        Poll::Ready(Ok(Step::Continue))
    }

    /// The response is out: the request is over (its body is dropped here, which ends its bookkeeping).
    fn end_response(&mut self) {
        let exchange = Exchange::of(&mut self.exchange);
        let unread_body = exchange.feed.take().is_some();
        exchange.stage = Stage::Head;
        if exchange.current.close || self.shutting_down || unread_body {
            exchange.stage = Stage::Close {
                linger: unread_body || exchange.current.unread || !self.read_buf.is_empty(),
            };
        } else if self.read_buf.is_empty() {
            self.start_wait(Wait::Idle);
        } else {
            self.wait = Wait::None;
        }
    }

    /// After a `101 Switching Protocols` (the head is written): the connection becomes a tunnel to the instance,
    /// starting with what each side already sent past its head.
    fn switch_to_tunnel(&mut self) -> bool {
        let Some(exchange) = self.exchange.as_deref_mut() else {
            return false;
        };
        let Stage::Respond(responding) = &mut exchange.stage else {
            return false;
        };
        let Some((backend, from_backend)) = responding.take_switched() else {
            return false;
        };
        let Stage::Respond(responding) = std::mem::replace(&mut exchange.stage, Stage::Head) else {
            return false;
        };
        let metrics = &self.service.facts().context.metrics;
        metrics.websocket_upgrades.inc();
        let (received, sent) = (metrics.received_bytes.clone(), metrics.sent_bytes.clone());
        let tunnel = Tunnel::new(
            backend,
            std::mem::take(&mut self.read_buf).freeze(),
            from_backend,
            self.settings.idle_timeout.into(),
            received,
            sent,
        );
        self.wait = Wait::None;
        exchange.feed = None;
        exchange.stage = Stage::Tunnel(Box::new(Tunneling {
            tunnel,
            body: responding.into_body(),
        }));
        true
    }

    fn poll_tunnel(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        let Some(Stage::Tunnel(tunneling)) = self.exchange.as_deref_mut().map(|e| &mut e.stage)
        else {
            return Poll::Ready(Ok(Step::Continue));
        };
        let ended = ready!(tunneling.tunnel.poll(cx, &mut self.io));
        let sent = tunneling.tunnel.sent();
        tunneling.body.count_sent(sent);
        match ended {
            Ok(end) => tracing::debug!(?end, sent, "WebSocket tunnel ended"),
            Err(error) => tracing::debug!(%error, sent, "WebSocket tunnel failed"),
        }
        Poll::Ready(Ok(Step::Closed))
    }

    /// Writes everything queued.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(exchange) = self.exchange.as_deref_mut() {
            let sent = &self.service.facts().context.metrics.sent_bytes;
            while !exchange.out.is_empty() {
                let written = ready!(poll_writev(&mut self.io, cx, &[], &mut exchange.out))?;
                sent.inc_by(written as u64);
                exchange.progress += 1;
            }
        }
        // TLS takes bytes it cannot send yet (the socket is full) and sends them on flush; without it the tail of
        // a response could wait for the client's next request. A no-op on plain TCP.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes what is queued and sends FIN; then lingers when the client may still be sending.
    fn poll_close(&mut self, cx: &mut Context<'_>, linger: bool) -> Poll<io::Result<Step>> {
        ready!(self.poll_write_out(cx))?;
        ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
        if !linger {
            return Poll::Ready(Ok(Step::Closed));
        }
        self.wait = Wait::None;
        self.timer.set(Instant::now() + LINGER);
        self.set_stage(Stage::Linger);
        Poll::Ready(Ok(Step::Continue))
    }

    /// Reads and discards until the client closes or the linger time is up, so that closing with its bytes
    /// unread does not make the kernel send a reset that could destroy the last response on its way.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        loop {
            self.read_buf.clear();
            request::reserve_read(&mut self.read_buf);
            match self.io.poll_fill(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(Step::Closed)),
                Poll::Ready(Ok(n)) => self.count_received(n),
                Poll::Pending => {
                    ready!(self.poll_timer(cx));
                    return Poll::Ready(Ok(Step::Closed));
                }
            }
        }
    }
}

impl<IO, S> Future for Connection<IO, S>
where
    IO: Stream,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible>
        + Facts
        + Unpin,
    S::Future: Unpin,
{
    type Output = io::Result<Served>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_serve(cx)
    }
}
