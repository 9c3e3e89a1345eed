//! What real HTTP/2 clients send first reads as the frames they mean: nghttp2's `h2load` and `nghttp`
//! (Debian's nghttp2-client) connect to a listener here, which records their first bytes and closes.

use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;

use super::super::*;

/// Long enough for a client to start and send its first request on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `program` with `args` and the URL of a listener on 127.0.0.1, reads what it sends until the preface and a
/// whole header block (and what came in the same reads) are there, and returns the frames after the preface.
async fn first_frames(program: &str, args: &[&str]) -> Vec<Frame> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    let _client = Command::new(program)
        .args(args)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{program} is missing (Debian package nghttp2-client; ./test.sh installs it): {e}"
            )
        });
    let read = async {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut past_preface = false;
        loop {
            assert!(
                socket.read_buf(&mut buf).await.unwrap() > 0,
                "{program} closed first"
            );
            if !past_preface {
                if !check_preface(&buf).unwrap() {
                    continue;
                }
                let _ = buf.split_to(PREFACE.len());
                past_preface = true;
            }
            while let Some(frame) = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap() {
                frames.push(frame);
            }
            if frames.iter().any(|f| {
                matches!(
                    f,
                    Frame::Headers(Headers {
                        end_headers: true,
                        ..
                    })
                )
            }) {
                return frames;
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("{program} sent no whole request within {DEADLINE:?}"))
}

#[tokio::test]
async fn h2load_opens_with_settings_a_window_update_and_its_request() {
    let frames = first_frames("h2load", &["-n1", "-c1"]).await;
    let [Frame::Settings(settings), Frame::WindowUpdate {
        stream: 0,
        increment,
    }, Frame::Headers(request)] = &frames[..]
    else {
        panic!("h2load sent {frames:?}");
    };
    // h2load asks for no push and a large window for its downloads.
    assert_eq!(settings.enable_push, Some(false));
    assert!(
        settings
            .initial_window_size
            .is_some_and(|size| size > 65_535),
        "{settings:?}"
    );
    assert!(*increment > 0);
    assert_eq!(
        (request.stream, request.end_stream, request.end_headers),
        (1, true, true)
    );
    assert!(!request.fragment.is_empty());
    let mut theirs = Settings::default();
    theirs.apply(settings).unwrap();
    assert!(!theirs.enable_push);
}

#[tokio::test]
async fn nghttp_opens_with_priority_frames_and_a_prioritised_upload() {
    // `-d`: an upload, so a DATA frame follows the HEADERS.
    let frames = first_frames("nghttp", &["-d", "/dev/null"]).await;
    let Some(Frame::Settings(_)) = frames.first() else {
        panic!("nghttp sent {frames:?}");
    };
    // nghttp2's clients build a dependency tree with PRIORITY frames on idle streams before the request, and
    // send the request's HEADERS with priority fields: both read, the fields dropped.
    let priorities = frames
        .iter()
        .filter(|f| matches!(f, Frame::Priority { .. }))
        .count();
    assert!(priorities > 0, "nghttp sent {frames:?}");
    let Some(Frame::Headers(request)) = frames.iter().find(|f| matches!(f, Frame::Headers(_)))
    else {
        unreachable!("first_frames returns once a header block is in");
    };
    assert!(
        request.end_headers && !request.end_stream,
        "an upload: {request:?}"
    );
    assert!(request.stream % 2 == 1, "a client's stream: {request:?}");
}
