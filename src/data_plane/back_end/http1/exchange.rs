//! One request on a connection to an instance, and its response: the [`Exchange`] is driven by the request's
//! future until the response head has arrived, then by the response body until the response ends, both on the
//! client connection's task. Request and response bodies stream frame by frame in both directions at once: an
//! instance that answers before it has read the whole request body gets the rest while its answer streams back.
//! Interim 1xx responses are skipped. Whether a failed request may be sent again is [`Exchange::resend`]'s call
//! (DESIGN.md: the keep-alive race).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use super::connection::{BackendConnection, InstanceStream};
use super::request::{Outgoing, RequestFraming};
use super::response::{read_head, RawHead};
use crate::data_plane::back_end::cut::CutWatch;
use crate::data_plane::back_end::error::BackendError;
use crate::http1::framing::{
    chunk_size_line, decode, last_chunk_with, Download, CHUNK_END, LAST_CHUNK,
};
use crate::http1::io::WriteQueue;

/// What may be done with a request whose exchange failed before a response head arrived.
pub(crate) enum Resend {
    /// Not a byte of it reached the instance: it can go anywhere.
    Anywhere(Outgoing),
    /// It reached the instance, which closed the connection without answering; the request is safe to send
    /// again, once, on a fresh connection (the keep-alive race, DESIGN.md).
    Once(Outgoing),
    /// It cannot be sent again.
    Never,
}

/// One request on a connection and its response: driven by the request's future until the response head has
/// arrived, then by the response body until the response ends.
pub(crate) struct Exchange {
    conn: BackendConnection,
    request: Outgoing,
    /// How much of the request head has been written (an offset, not a copy: cloning the head's `Bytes` would
    /// allocate).
    head_written: usize,
    /// Framed body data queued behind the head.
    to_write: WriteQueue,
    wrote_any: bool,
    body_started: bool,
    /// The instance stopped taking the request (it closed or reset); its answer may still be readable.
    write_failed: bool,
    received_any: bool,
    /// How the response body is delimited (`Done` until the head has arrived).
    response: Download,
    keep_alive: bool,
    /// The response head, for an HTTP/1 client ([`Outgoing::raw_response`]).
    raw: Option<RawHead>,
    /// The instance switched to WebSocket: the connection is a tunnel now ([`Exchange::into_switched`]).
    switched: bool,
    /// The target's cut, when the exchange is on a routed target: deregistration ends the exchange.
    cut: Option<CutWatch>,
}

impl Exchange {
    pub(crate) fn new(conn: BackendConnection, request: Outgoing) -> Self {
        Exchange {
            conn,
            head_written: 0,
            request,
            to_write: WriteQueue::default(),
            wrote_any: false,
            body_started: false,
            write_failed: false,
            received_any: false,
            response: Download::Done,
            keep_alive: false,
            raw: None,
            switched: false,
            cut: None,
        }
    }

    /// Ends the exchange (a [`BackendError::Cut`]) when `cut` fires: its target was deregistered.
    pub(crate) fn watching(mut self, cut: CutWatch) -> Self {
        self.cut = Some(cut);
        self
    }

    /// Whether the target was cut; checked when the exchange would wait, so the cut wakes it.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.cut.as_mut().is_some_and(|cut| cut.poll_cut(cx))
    }

    /// Sends the request and waits for the response head (interim 1xx responses skipped).
    pub(crate) async fn response_head(&mut self) -> Result<Response<()>, BackendError> {
        std::future::poll_fn(|cx| self.poll_head(cx)).await
    }

    /// After a failed [`Exchange::response_head`]: whether and where the request may be sent again.
    pub(crate) fn resend(self, error: &BackendError) -> Resend {
        if self.body_started || self.received_any {
            return Resend::Never;
        }
        if !self.wrote_any {
            return Resend::Anywhere(self.request);
        }
        match error {
            BackendError::Closed(_) if self.request.replayable => Resend::Once(self.request),
            _ => Resend::Never,
        }
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response<()>, BackendError>> {
        loop {
            if let Poll::Ready(Err(error)) = self.poll_upload(cx) {
                return Poll::Ready(Err(BackendError::ClientBody(error)));
            }
            if let Some(response) = self.parse_head()? {
                return Poll::Ready(Ok(response));
            }
            let filled = match self.conn.poll_fill(cx) {
                Poll::Pending if self.poll_cut(cx) => return Poll::Ready(Err(BackendError::Cut)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(filled) => filled,
            };
            match filled {
                Ok(0) if self.received_any => {
                    return Poll::Ready(Err(BackendError::BadResponse(
                        "closed in the response head",
                    )))
                }
                Ok(0) => {
                    let closed =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "closed without answering");
                    return Poll::Ready(Err(BackendError::Closed(closed)));
                }
                Ok(_) => self.received_any = true,
                Err(error) => return Poll::Ready(Err(BackendError::Closed(error))),
            }
        }
    }

    /// Writes what is queued and feeds the request body in, frame by frame, as the socket takes it. `Ready(Ok)`
    /// once the whole request is out (or the instance stopped taking it); an error is the client's body failing.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.write_failed {
                return Poll::Ready(Ok(()));
            }
            if self.head_written < self.request.head.len()
                || !self.to_write.is_empty()
                || self.conn.is_unflushed()
            {
                let head_written = self.head_written;
                let written = self.conn.poll_write_all(
                    &self.request.head,
                    &mut self.head_written,
                    &mut self.to_write,
                    cx,
                );
                self.wrote_any |= self.head_written > head_written;
                match written {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "instance stopped taking the request");
                        self.write_failed = true;
                        self.head_written = self.request.head.len();
                        self.to_write.clear();
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            let Some(body) = self.request.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    self.body_started = true;
                    self.queue_frame(frame);
                }
                Some(Err(error)) => {
                    self.request.body = None;
                    self.write_failed = true;
                    return Poll::Ready(Err(error));
                }
                None => {
                    self.body_started = true;
                    self.request.body = None;
                    if self.request.framing == RequestFraming::Chunked {
                        self.to_write.push_static(LAST_CHUNK);
                    }
                }
            }
        }
    }

    fn queue_frame(&mut self, frame: Frame<Bytes>) {
        let chunked = self.request.framing == RequestFraming::Chunked;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) if chunked => {
                self.to_write.push(chunk_size_line(data.len()));
                self.to_write.push(data);
                self.to_write.push_static(CHUNK_END);
            }
            Ok(data) => self.to_write.push(data),
            Err(frame) => {
                // Trailers end a chunked body; a body of known length has nowhere to put them.
                let Ok(trailers) = frame.into_trailers() else {
                    return;
                };
                if chunked {
                    self.to_write.push(last_chunk_with(&trailers));
                    self.request.body = None;
                }
            }
        }
    }

    /// Parses a response head from what has been read, skipping interim responses. `None`: not all there yet.
    fn parse_head(&mut self) -> Result<Option<Response<()>>, BackendError> {
        let Some(head) = read_head(
            &mut self.conn.read_buf,
            self.request.head_only,
            self.request.raw_response,
            self.request.upgrade,
        )?
        else {
            return Ok(None);
        };
        self.raw = head.raw;
        self.switched = head.response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        self.response = head.download;
        self.keep_alive = head.keep_alive;
        Ok(Some(head.response))
    }
}

impl Exchange {
    /// The next frame of the response body, keeping the request body going meanwhile.
    pub(crate) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if let Poll::Ready(Err(error)) = self.poll_upload(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            match decode(&mut self.response, &mut self.conn.read_buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if matches!(self.response, Download::Done) => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
            let filled = match self.conn.poll_fill(cx) {
                Poll::Pending if self.poll_cut(cx) => {
                    let cut =
                        io::Error::new(io::ErrorKind::ConnectionAborted, "instance deregistered");
                    return Poll::Ready(Some(Err(cut)));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(filled) => filled,
            };
            match filled {
                Ok(0) => {
                    if matches!(self.response, Download::UntilClose) {
                        self.response = Download::Done;
                        return Poll::Ready(None);
                    }
                    let cut =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "instance closed mid-body");
                    return Poll::Ready(Some(Err(cut)));
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }

    /// The response head as received, when the request asked for it ([`Outgoing::raw_response`]).
    pub(crate) fn take_raw_head(&mut self) -> Option<RawHead> {
        self.raw.take()
    }

    /// The response head as received, left in place (a layer reading the instance's headers, e.g. stickiness).
    pub(crate) fn raw_head(&self) -> Option<&RawHead> {
        self.raw.as_ref()
    }

    /// Whether the response body is complete.
    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(self.response, Download::Done | Download::Length(0))
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.response {
            Download::Length(n) => SizeHint::with_exact(n),
            Download::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The connection, if the exchange ended so cleanly that the next request can use it: the whole request
    /// sent, the whole response read and nothing more, and neither side asked to close.
    pub(crate) fn into_reusable(self) -> Option<BackendConnection> {
        let clean = self.is_end_stream()
            && self.keep_alive
            && !self.request.close_after
            && self.request.body.is_none()
            && self.head_written == self.request.head.len()
            && self.to_write.is_empty()
            && !self.write_failed
            && !self.conn.is_unflushed()
            && self.conn.read_buf.is_empty();
        clean.then_some(self.conn)
    }

    /// Whether the instance answered `101 Switching Protocols`: the connection carries a tunnel now.
    pub(crate) fn is_switched(&self) -> bool {
        self.switched
    }

    /// The connection after a `101`: its socket, and the bytes the instance sent after the head (its first
    /// WebSocket frames).
    pub(crate) fn into_switched(self) -> Option<(InstanceStream, Bytes)> {
        self.switched.then(|| self.conn.into_parts())
    }
}
