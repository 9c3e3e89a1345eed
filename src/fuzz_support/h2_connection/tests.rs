//! The `h2_connection` target's seeds, built here with elbe's frame writers and HPACK encoder (so they are
//! conversations a real client could have), checked against the files in `fuzz/corpus/h2_connection/`, and each
//! run through [`h2_connection`], with a few inputs that are garbage.

use std::path::PathBuf;

use bytes::BufMut;

use super::*;
use crate::http2::frame::{
    write_data, write_goaway, write_headers, write_rst_stream, write_settings, write_settings_ack,
    write_window_update, SettingsUpdate,
};
use crate::http2::hpack::Encoder;

/// One client's bytes after the preface; one HPACK encoder for the connection, as a client keeps.
#[derive(Default)]
struct Client {
    out: BytesMut,
    encoder: Encoder,
}

impl Client {
    /// A client's SETTINGS, with `initial_window_size` when given.
    fn settings(initial_window_size: Option<u32>) -> Self {
        let mut client = Client::default();
        let update = SettingsUpdate {
            initial_window_size,
            ..SettingsUpdate::default()
        };
        write_settings(&mut client.out, &update);
        client
    }

    /// A request's header block on `stream`, split at `max_frame` bytes (HEADERS, then CONTINUATION frames).
    fn request(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        end_stream: bool,
        max_frame: u32,
    ) -> &mut Self {
        let mut fields = vec![
            (":method", method),
            (":scheme", "http"),
            (":authority", "example.com"),
            (":path", path),
        ];
        fields.extend_from_slice(extra);
        let mut block = BytesMut::new();
        self.encoder.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut block,
        );
        write_headers(&mut self.out, stream, &block, end_stream, max_frame);
        self
    }

    fn get(&mut self, stream: u32, path: &str) -> &mut Self {
        self.request(stream, "GET", path, &[], true, 16_384)
    }

    fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> &mut Self {
        write_data(&mut self.out, stream, data, end_stream);
        self
    }

    fn window_update(&mut self, stream: u32, increment: u32) -> &mut Self {
        write_window_update(&mut self.out, stream, increment);
        self
    }

    /// A PING asking for an answer (elbe's writers only answer one).
    fn ping(&mut self, payload: [u8; 8]) -> &mut Self {
        self.out.put_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0]);
        self.out.put_slice(&payload);
        self
    }

    fn bytes(&self) -> Vec<u8> {
        self.out.to_vec()
    }
}

/// The seeds, by file name.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut get = Client::settings(None);
    write_settings_ack(&mut get.out);
    get.get(1, "/");

    let mut post = Client::settings(None);
    post.request(
        1,
        "POST",
        "/body",
        &[("content-length", "10")],
        false,
        16_384,
    )
    .data(1, b"hell", false)
    .data(1, b"o, elb", true)
    .get(3, "/after");

    let mut continuation = Client::settings(None);
    let long = (
        "x-long",
        "a value long enough to need three CONTINUATION frames",
    );
    continuation.request(1, "GET", "/continued", &[long], true, 16);

    let mut window = Client::settings(Some(16));
    window.get(1, "/big").get(3, "/slow-and-small");
    for _ in 0..8 {
        window.window_update(1, 10_000).window_update(0, 10_000);
    }
    window.window_update(3, 100);

    let mut reset = Client::settings(None);
    reset.get(1, "/slow");
    write_rst_stream(&mut reset.out, 1, ErrorCode::Cancel);
    reset.get(3, "/next");

    let mut ping = Client::settings(None);
    ping.ping(*b"elbe-h2!").get(1, "/").ping([0; 8]);

    let mut goaway = Client::settings(None);
    goaway.get(1, "/slow").get(3, "/big");
    write_goaway(&mut goaway.out, 0, ErrorCode::NoError, b"bye");
    goaway.window_update(3, 20_000).window_update(0, 20_000);

    let mut many = Client::settings(None);
    for stream in (1..=21).step_by(2) {
        many.get(stream, "/slow");
    }
    vec![
        ("seed-get", get.bytes()),
        ("seed-post-data-end-stream", post.bytes()),
        ("seed-continuation", continuation.bytes()),
        ("seed-small-window-then-updates", window.bytes()),
        ("seed-rst-stream-open", reset.bytes()),
        ("seed-ping", ping.bytes()),
        ("seed-goaway-then-window-updates", goaway.bytes()),
        ("seed-more-streams-than-allowed", many.bytes()),
    ]
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/h2_connection")
}

/// The committed seeds are the ones built here (`ELBE_WRITE_SEEDS=1` writes them after a change), and every one
/// is served to its end with the invariants holding.
#[test]
fn every_seed_is_committed_and_holds_the_invariants() {
    let write = std::env::var_os("ELBE_WRITE_SEEDS").is_some();
    for (name, bytes) in seeds() {
        let path = corpus().join(name);
        if write {
            std::fs::create_dir_all(corpus()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (ELBE_WRITE_SEEDS=1 writes it)", path.display()));
        assert_eq!(committed, bytes, "{name} differs from the seed built here");
        h2_connection(&bytes);
    }
}

/// The seeds do reach what they are for: answers come back (the windows' seed gets its whole `/big` body).
#[test]
fn the_seeds_get_answers() {
    for (name, bytes) in seeds() {
        let mut sent = PREFACE.to_vec();
        sent.extend_from_slice(&bytes);
        let (received, result) = converse(&sent);
        assert!(result.is_ok(), "{name}: {result:?}");
        let mut buf = BytesMut::from(&received[..]);
        let mut data = 0;
        let mut answers = 0;
        while let Some(frame) = read_frame(&mut buf, MAX_FRAME_SIZE_LIMIT).unwrap() {
            match frame {
                Frame::Headers(_) => answers += 1,
                Frame::Data(d) => data += d.data.len(),
                _ => {}
            }
        }
        assert!(answers > 0, "{name}: no response");
        if name == "seed-small-window-then-updates" {
            assert!(data >= BIG, "{name}: only {data} bytes of DATA");
        }
    }
}

/// Garbage ends the connection (a GOAWAY, or the client's close) without breaking an invariant.
#[test]
fn garbage_holds_the_invariants() {
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0; 9],
        vec![0xff; 64],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // A HEADERS frame on stream 1 whose block is one byte of a bad HPACK index.
        vec![0, 0, 1, 1, 5, 0, 0, 0, 1, 0xff],
        // DATA on an idle stream, a WINDOW_UPDATE of zero, a frame longer than 16,384.
        vec![0, 0, 1, 0, 0, 0, 0, 0, 3, b'x'],
        vec![0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0, 0x40, 1, 0, 0, 0, 0, 0, 1],
    ];
    inputs.push((0..=255u8).cycle().take(5000).collect());
    for input in inputs {
        h2_connection(&input);
    }
}
