//! What the connection does with each frame the client sends, and how its streams' answers and the write buffer
//! move on: the state machine of RFC 9113 §5.1 for a server, with the windows of §6.9.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::Frame as BodyFrame;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use super::stream::TunnelEnd;
use super::*;
use crate::data_plane::front_end::http2::websocket::ClientTunnel;
use crate::http2::hpack::Field;

/// How far past the header-list limit a header block's encoded bytes may go: a block this long cannot decode
/// under the limit (a field's encoding is never longer than the 32 bytes of overhead it counts for, RFC 7541
/// §4.1), so it is cut before it is all read (a CONTINUATION flood).
const BLOCK_SLACK: usize = 1024;

/// Bytes a WebSocket's tunnel holds each way between the connection and the tunnel's task.
const TUNNEL_BUFFER: usize = 64 * 1024;

impl<IO, S> Connection<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    pub(super) fn handle_frame(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        if let Some(block) = &self.block {
            let stream = block.stream;
            return match frame {
                Frame::Continuation(continuation) if continuation.stream == stream => {
                    self.continuation(continuation)
                }
                _ => Err(ConnectionError::new(
                    ErrorCode::ProtocolError,
                    "a frame between HEADERS and its CONTINUATION",
                )),
            };
        }
        match frame {
            Frame::Data(data) => self.data(data),
            Frame::Headers(headers) => self.headers(headers),
            Frame::Continuation(_) => Err(ConnectionError::new(
                ErrorCode::ProtocolError,
                "CONTINUATION without HEADERS",
            )),
            Frame::Priority { .. } | Frame::Unknown { .. } | Frame::SettingsAck => Ok(()),
            Frame::RstStream { stream, .. } => self.client_reset(stream),
            Frame::Settings(update) => self.settings(&update),
            Frame::PushPromise { .. } => Err(ConnectionError::new(
                ErrorCode::ProtocolError,
                "a client sent PUSH_PROMISE",
            )),
            Frame::Ping { ack, payload } => {
                if !ack {
                    write_ping_ack(&mut self.out.buf, payload);
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                // No new streams; those in flight finish, and their WINDOW_UPDATEs are still read.
                self.peer_goaway = true;
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => self.window_update(stream, increment),
        }
    }

    /// Whether `stream` is one the client never opened (a frame on it is a connection error, §5.1).
    fn is_idle(&self, stream: u32) -> bool {
        stream > self.last_stream
    }

    fn data(&mut self, data: Data) -> Result<(), ConnectionError> {
        let len = data.flow_controlled_len();
        self.recv_window -= i64::from(len);
        if self.recv_window < 0 {
            return Err(ConnectionError::new(
                ErrorCode::FlowControlError,
                "DATA past the connection's window",
            ));
        }
        if self.is_idle(data.stream) {
            return Err(ConnectionError::new(
                ErrorCode::ProtocolError,
                "DATA on an idle stream",
            ));
        }
        if let Some(stream) = self.streams.get_mut(&data.stream) {
            if let Some(tunnel) = stream.tunnel.as_mut().filter(|t| !t.in_ended) {
                tunnel.window -= i64::from(len);
                if tunnel.window < 0 {
                    self.recv_unreleased += len;
                    self.reset(data.stream, ErrorCode::FlowControlError);
                    return Ok(());
                }
                self.recv_unreleased += data.padding;
                tunnel.push(data.data);
                if data.end_stream {
                    tunnel.in_ended = true;
                    stream.remote_ended = true;
                }
                stream.wake();
                return Ok(());
            }
        }
        let Some(stream) = self.streams.get_mut(&data.stream) else {
            // A closed stream: its bytes still count on the connection (§6.9), and are dropped.
            self.recv_unreleased += len;
            return Ok(());
        };
        let Some(upload) = stream.upload.as_mut() else {
            // Half-closed by the client's END_STREAM: nothing more may come on it (§5.1).
            self.recv_unreleased += len;
            self.reset(data.stream, ErrorCode::StreamClosed);
            return Ok(());
        };
        upload.window -= i64::from(len);
        upload.received += data.data.len() as u64;
        if upload.window < 0 {
            self.recv_unreleased += len;
            self.reset(data.stream, ErrorCode::FlowControlError);
            return Ok(());
        }
        let over = upload.expected.is_some_and(|expected| {
            upload.received > expected || (data.end_stream && upload.received != expected)
        });
        if over {
            self.recv_unreleased += len;
            self.reset(data.stream, ErrorCode::ProtocolError);
            return Ok(());
        }
        upload.unreleased += len;
        if !data.data.is_empty() {
            upload.sender.send(Ok(BodyFrame::data(data.data)));
        }
        if data.end_stream {
            self.end_upload(data.stream);
        }
        Ok(())
    }

    /// The client's side of `stream` ended: its body is complete.
    fn end_upload(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if let Some(upload) = stream.upload.take() {
                self.recv_unreleased += upload.unreleased;
            }
            stream.remote_ended = true;
        }
        self.uploads.retain(|&upload| upload != id);
    }

    fn headers(&mut self, headers: Headers) -> Result<(), ConnectionError> {
        if headers.end_headers {
            return self.header_block(headers.stream, headers.end_stream, &headers.fragment);
        }
        let mut bytes = BytesMut::with_capacity(headers.fragment.len() * 2);
        bytes.extend_from_slice(&headers.fragment);
        self.block = Some(Block {
            stream: headers.stream,
            end_stream: headers.end_stream,
            bytes,
        });
        self.check_block_size()
    }

    fn continuation(&mut self, continuation: Continuation) -> Result<(), ConnectionError> {
        let Some(block) = &mut self.block else {
            return Ok(());
        };
        block.bytes.extend_from_slice(&continuation.fragment);
        self.check_block_size()?;
        if continuation.end_headers {
            if let Some(block) = self.block.take() {
                return self.header_block(block.stream, block.end_stream, &block.bytes.freeze());
            }
        }
        Ok(())
    }

    fn check_block_size(&self) -> Result<(), ConnectionError> {
        let limit = self.settings.max_header_list_size as usize + BLOCK_SLACK;
        match &self.block {
            Some(block) if block.bytes.len() > limit => Err(ConnectionError::new(
                ErrorCode::EnhanceYourCalm,
                "a header block longer than the header-list limit",
            )),
            _ => Ok(()),
        }
    }

    /// Decodes a whole block (the HPACK state must move on even for a stream that is refused).
    pub(super) fn decode_block(&mut self, block: &Bytes) -> Result<Vec<Field>, ConnectionError> {
        let mut fields = Vec::with_capacity(16);
        match self.decoder.decode(block, |field| fields.push(field)) {
            Ok(()) => Ok(fields),
            Err(error) if error.is_header_list_too_large() => Err(ConnectionError::new(
                ErrorCode::EnhanceYourCalm,
                error.to_string(),
            )),
            Err(error) => Err(ConnectionError::new(
                ErrorCode::CompressionError,
                error.to_string(),
            )),
        }
    }

    fn header_block(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &Bytes,
    ) -> Result<(), ConnectionError> {
        let fields = self.decode_block(block)?;
        if id.is_multiple_of(2) {
            return Err(ConnectionError::new(
                ErrorCode::ProtocolError,
                "a stream id the client may not use",
            ));
        }
        if !self.is_idle(id) {
            if !self.streams.contains_key(&id) && !self.recently_reset.contains(&id) {
                return Err(ConnectionError::new(
                    ErrorCode::ProtocolError,
                    "HEADERS on a stream that is closed or was skipped",
                ));
            }
            return self.trailers(id, end_stream, fields);
        }
        self.last_stream = id;
        if self.going_away.is_some() || self.peer_goaway {
            return Ok(());
        }
        if self.streams.len() >= self.settings.max_concurrent_streams as usize {
            write_rst_stream(&mut self.out.buf, id, ErrorCode::RefusedStream);
            self.remember_reset(id);
            return Ok(());
        }
        let mut head = match request_head(fields, self.ours.enable_connect_protocol) {
            Ok(head) => head,
            Err(malformed) => {
                tracing::debug!(stream = id, %malformed, "malformed HTTP/2 request; stream reset");
                self.reset(id, ErrorCode::ProtocolError);
                return Ok(());
            }
        };
        if end_stream && head.content_length.is_some_and(|length| length > 0) {
            self.reset(id, ErrorCode::ProtocolError);
            return Ok(());
        }
        let mut tunnel = None;
        let (body, upload) = if end_stream {
            (RequestBody::Empty, None)
        } else if head.extended_connect {
            // The stream becomes the WebSocket's tunnel; the request to the instance has no body.
            let (ours, theirs) = tokio::io::duplex(TUNNEL_BUFFER);
            tunnel = Some(TunnelEnd::new(ours, self.ours.initial_window_size));
            head.request
                .extensions_mut()
                .insert(ClientTunnel::new(theirs));
            (RequestBody::Empty, None)
        } else {
            let (body, sender) = ClientBody::channel(head.content_length);
            let upload = Upload {
                sender,
                expected: head.content_length,
                received: 0,
                window: i64::from(self.ours.initial_window_size),
                unreleased: 0,
            };
            (RequestBody::Client(body), Some(upload))
        };
        let request = head.request.map(|()| body);
        let method = request.method().clone();
        let future = self.service.call(request);
        if upload.is_some() {
            self.uploads.push(id);
        }
        let send_window = i64::from(self.peer.initial_window_size);
        let stream = Stream::new(
            id,
            &self.ready,
            future,
            &method,
            send_window,
            upload,
            tunnel,
        );
        self.streams.insert(id, stream);
        Ok(())
    }

    /// A header block on an open stream: the request's trailers, which end it (§8.1).
    fn trailers(
        &mut self,
        id: u32,
        end_stream: bool,
        fields: Vec<Field>,
    ) -> Result<(), ConnectionError> {
        let Some(upload) = self.streams.get_mut(&id).and_then(|s| s.upload.as_mut()) else {
            // A stream that closed (or was reset): its late trailers change nothing.
            return Ok(());
        };
        if !end_stream {
            self.reset(id, ErrorCode::ProtocolError);
            return Ok(());
        }
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for field in fields {
            let name = HeaderName::from_bytes(&field.name);
            let value = HeaderValue::from_maybe_shared(field.value);
            match (name, value) {
                (Ok(name), Ok(value)) if !field.name.starts_with(b":") => {
                    trailers.append(name, value);
                }
                _ => {
                    self.reset(id, ErrorCode::ProtocolError);
                    return Ok(());
                }
            }
        }
        if upload
            .expected
            .is_some_and(|expected| expected != upload.received)
        {
            self.reset(id, ErrorCode::ProtocolError);
            return Ok(());
        }
        upload.sender.send(Ok(BodyFrame::trailers(trailers)));
        self.end_upload(id);
        Ok(())
    }

    fn client_reset(&mut self, id: u32) -> Result<(), ConnectionError> {
        if self.is_idle(id) {
            return Err(ConnectionError::new(
                ErrorCode::ProtocolError,
                "RST_STREAM on an idle stream",
            ));
        }
        if let Some(stream) = self.remove(id) {
            if !stream.answered() {
                self.net_resets += 1;
                if self.net_resets > MAX_NET_RESETS {
                    return Err(ConnectionError::new(
                        ErrorCode::EnhanceYourCalm,
                        "too many streams reset before their answer",
                    ));
                }
            }
        }
        Ok(())
    }

    fn settings(&mut self, update: &SettingsUpdate) -> Result<(), ConnectionError> {
        let before = self.peer.initial_window_size;
        self.peer.apply(update)?;
        if let Some(size) = update.header_table_size {
            self.out.encoder.set_peer_max_table_size(size as usize);
        }
        self.out.max_frame = self.peer.max_frame_size;
        let delta = i64::from(self.peer.initial_window_size) - i64::from(before);
        if delta != 0 {
            for (&id, stream) in &mut self.streams {
                stream.send_window += delta;
                if stream.send_window > i64::from(MAX_WINDOW_SIZE) {
                    return Err(ConnectionError::new(
                        ErrorCode::FlowControlError,
                        "SETTINGS_INITIAL_WINDOW_SIZE takes a window past 2^31-1",
                    ));
                }
                if delta > 0 {
                    self.ready.push(id);
                }
            }
        }
        write_settings_ack(&mut self.out.buf);
        Ok(())
    }

    fn window_update(&mut self, id: u32, increment: u32) -> Result<(), ConnectionError> {
        if id == 0 {
            self.out.window += i64::from(increment);
            if self.out.window > i64::from(MAX_WINDOW_SIZE) {
                return Err(ConnectionError::new(
                    ErrorCode::FlowControlError,
                    "a WINDOW_UPDATE takes the connection's window past 2^31-1",
                ));
            }
            for id in self.blocked_on_window.drain(..) {
                self.ready.push(id);
            }
            return Ok(());
        }
        if self.is_idle(id) {
            return Err(ConnectionError::new(
                ErrorCode::ProtocolError,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        stream.send_window += i64::from(increment);
        if stream.send_window > i64::from(MAX_WINDOW_SIZE) {
            self.reset(id, ErrorCode::FlowControlError);
        } else {
            self.ready.push(id);
        }
        Ok(())
    }

    /// Resets a stream from elbe's side (a stream error, §5.4.2).
    pub(super) fn reset(&mut self, id: u32, code: ErrorCode) {
        write_rst_stream(&mut self.out.buf, id, code);
        self.remember_reset(id);
        self.remove(id);
    }

    /// Frames the client sent before it saw elbe's RST_STREAM are ignored (§5.1), not taken for errors.
    fn remember_reset(&mut self, id: u32) {
        let slot = self.resets_seen % self.recently_reset.len();
        self.recently_reset[slot] = id;
        self.resets_seen += 1;
    }

    /// Takes `id` out of the table; its request and response end with it (dropped: the instance's exchange is cut
    /// if unfinished, the access-log line written).
    fn remove(&mut self, id: u32) -> Option<Stream<S::Future>> {
        let mut stream = self.streams.remove(&id)?;
        if let Some(upload) = stream.upload.take() {
            upload.sender.send(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the HTTP/2 stream was reset",
            )));
            self.recv_unreleased += upload.unreleased;
            self.uploads.retain(|&upload| upload != id);
        }
        Some(stream)
    }

    /// A connection error: GOAWAY with its code; the connection closes once it is written.
    pub(super) fn fail(&mut self, error: ConnectionError) {
        tracing::debug!(code = ?error.code, reason = %error.reason, "HTTP/2 connection error");
        write_goaway(&mut self.out.buf, self.last_stream, error.code, b"");
        self.streams.clear();
        self.failed = Some(ServerError::GoAway {
            code: error.code,
            reason: error.reason,
        });
    }

    /// Polls the streams that asked for it; `true` if any was polled.
    pub(super) fn poll_streams(&mut self) -> bool {
        let mut polled = false;
        // A stream that wakes itself as it returns (tokio's budget spent) is polled again on the next turn.
        let mut budget = self.streams.len() * 2 + 16;
        while self.out.has_room() && budget > 0 {
            budget -= 1;
            let Some(id) = self.ready.pop() else { break };
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            polled = true;
            match stream.poll(id, &mut self.out, &self.underway) {
                Progress::Pending => {}
                Progress::ConnectionWindow => self.blocked_on_window.push(id),
                Progress::WriteFull => self.blocked_on_write.push(id),
                Progress::Sent => self.sent(id),
            }
        }
        polled
    }

    /// `id`'s response is all written: the stream closes, with RST_STREAM NO_ERROR if the client is still
    /// sending a body no one will read (§8.1).
    fn sent(&mut self, id: u32) {
        let remote_ended = self
            .streams
            .get(&id)
            .is_none_or(|stream| stream.remote_ended);
        if !remote_ended {
            write_rst_stream(&mut self.out.buf, id, ErrorCode::NoError);
            self.remember_reset(id);
        }
        self.remove(id);
        self.net_resets = self.net_resets.saturating_sub(1);
    }

    /// Gives back the window of request bodies the stack has read, and of bytes that went to no body.
    pub(super) fn release_uploads(&mut self, cx: &mut Context<'_>) {
        for &id in &self.uploads {
            let Some(upload) = self.streams.get_mut(&id).and_then(|s| s.upload.as_mut()) else {
                continue;
            };
            upload.sender.register(cx.waker());
            if upload.unreleased > 0 && upload.sender.wanted() {
                write_window_update(&mut self.out.buf, id, upload.unreleased);
                upload.window += i64::from(upload.unreleased);
                self.recv_unreleased += upload.unreleased;
                upload.unreleased = 0;
            }
        }
        self.recv_unreleased += std::mem::take(&mut self.out.release);
        if self.recv_unreleased > 0 {
            write_window_update(&mut self.out.buf, 0, self.recv_unreleased);
            self.recv_window += i64::from(self.recv_unreleased);
            self.recv_unreleased = 0;
        }
    }

    /// Writes what is buffered; `true` if anything was written.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, ServerError> {
        let mut wrote = false;
        while !self.out.buf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out.buf) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    return Err(
                        io::Error::new(io::ErrorKind::WriteZero, "client socket closed").into(),
                    )
                }
                Poll::Ready(Ok(n)) => {
                    bytes::Buf::advance(&mut self.out.buf, n);
                    wrote = true;
                    self.flushed = false;
                }
                Poll::Ready(Err(error)) => return Err(error.into()),
            }
        }
        if self.out.buf.is_empty() {
            self.out.buf.clear();
        }
        if !self.flushed {
            if let Poll::Ready(result) = Pin::new(&mut self.io).poll_flush(cx) {
                result?;
                self.flushed = true;
            }
        }
        if wrote && self.out.has_room() {
            for id in self.blocked_on_write.drain(..) {
                self.ready.push(id);
            }
        }
        Ok(wrote)
    }
}
