//! The WebSocket instance tests/websocket.rs and tests/websocket_h2.rs share: a real tokio-tungstenite server.
// Shared by two test binaries: `pub` is how they share it, not an API.
#![allow(unreachable_pub)]

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

use crate::common::InstanceSpec;

/// A WebSocket echo instance: sends `first_message` of the handshake's request as its first message, then answers
/// each text message with `echo: <text>`. It agrees to the subprotocol `chat` when one is asked for.
pub async fn echo_instance(
    first_message: fn(&Request) -> String,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = String::new();
                // The callback's error type is tungstenite's (large); a test server never returns it.
                #[allow(clippy::result_large_err)]
                let saw = |request: &Request, mut response: Response| {
                    seen = first_message(request);
                    if request.headers().contains_key("sec-websocket-protocol") {
                        response
                            .headers_mut()
                            .insert("sec-websocket-protocol", "chat".parse().unwrap());
                    }
                    Ok(response)
                };
                // A TCP health check connects and closes: not a WebSocket, nothing to do.
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, saw).await else {
                    return;
                };
                let _ = socket.send(Message::text(seen)).await;
                while let Some(Ok(message)) = socket.next().await {
                    let echo = match message {
                        Message::Text(text) => Message::text(format!("echo: {text}")),
                        Message::Close(_) => return,
                        _ => continue,
                    };
                    if socket.send(echo).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, task)
}

/// The one instance of these tests.
pub fn rec(address: SocketAddr) -> InstanceSpec {
    InstanceSpec {
        id: "i-ws".into(),
        zone: "zone-a".into(),
        address,
    }
}

/// A request header's value, `-` when absent.
pub fn header(request: &Request, name: &str) -> String {
    request
        .headers()
        .get(name)
        .map_or("-", |v| v.to_str().unwrap_or("?"))
        .to_owned()
}
