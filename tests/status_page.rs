//! The status page in a real browser: Debian's `chromium`, headless, driven over the DevTools protocol (a
//! WebSocket, Runtime.evaluate). Two zones, an instance in each on a real backend; the page must list both
//! InService, then show one OutOfService (and the change) without a reload when its backend stops, stay readable
//! at 320 px, and leave a screenshot in target/status-page.png and docs/status-page.png. In cluster mode (a real
//! etcd, two `elbe run` processes) it also lists the members, each member's view of an instance, and whether the
//! state store answers, which it follows when etcd stops.
mod common;
#[cfg(feature = "cluster")]
mod etcd_support;
#[cfg(feature = "cluster")]
mod run_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Backend, Behaviour, ConfigBuilder};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// One DevTools connection to the browser, and the session of one page in it.
struct Page {
    socket: Socket,
    next_id: u64,
    session: Option<String>,
}

impl Page {
    /// Sends a command and returns its result (events that arrive meanwhile are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        let command = command.to_string();
        self.socket
            .send(Message::text(command))
            .await
            .expect("DevTools send");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer from chromium in 20 s"))
                .expect("DevTools connection closed")
                .expect("DevTools read");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply["id"] == id && reply["sessionId"].as_str() == self.session.as_deref() {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true` (deadline 15 s); the page redraws every 2 s by itself.
    async fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.eval(expression).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shown = self.eval("document.body.innerText").await;
        panic!(
            "the page never showed {what}; it shows:\n{}",
            shown.as_str().unwrap_or_default()
        );
    }
}

/// (instance id, state) of every instance row, as the page draws them.
const INSTANCE_STATES: &str = "JSON.stringify([...document.querySelectorAll('tr[data-instance]')]
    .map(r => [r.dataset.instance, r.querySelector('[data-state]').dataset.state, r.innerText]))";

/// Starts headless chromium; returns the process and its browser DevTools WebSocket URL.
async fn start_chromium(profile: &Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            // Root in containers and CI has no user namespace for the sandbox; this browser loads one local page.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--window-size=1100,860",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run chromium ({error}): install Debian's package chromium (./test.sh installs it)")
        });
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    // What chromium said before DevTools, for the failure message (it once took over 30 s, twice, in a clean-clone CI run).
    let mut said = Vec::new();
    let browser = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("chromium stderr") {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                return Some(url.trim().to_string());
            }
            said.push(line);
        }
        None
    })
    .await;
    let said = || {
        said.iter()
            .rev()
            .take(20)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let browser = browser
        .unwrap_or_else(|_| {
            panic!(
                "chromium did not open DevTools within 60 s; it said:\n{}",
                said()
            )
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium exited without opening DevTools; it said:\n{}",
                said()
            )
        });
    // Keep draining stderr so chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, browser)
}

/// Opens `url` in a new tab and attaches to it (a flat session: the page's commands carry its session id).
async fn open(browser: &str, url: &str) -> Page {
    let (socket, _) = tokio_tungstenite::connect_async(browser)
        .await
        .expect("DevTools WebSocket");
    let mut page = Page {
        socket,
        next_id: 0,
        session: None,
    };
    let target = page
        .call("Target.createTarget", json!({ "url": url }))
        .await;
    let attached = page
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    page.session = Some(
        attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string(),
    );
    page
}

/// Standard base64 (what Page.captureScreenshot answers), decoded.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        other => panic!("not base64: {other}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &d)| acc | u32::from(d) << (18 - 6 * i));
            bits.to_be_bytes()[1..chunk.len()].to_vec()
        })
        .collect()
}

async fn screenshot(page: &mut Page) -> Vec<u8> {
    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    png
}

fn write(path: PathBuf, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_instance_states_and_follows_a_health_flip() {
    let a = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .dns()
        .zones(&[("zone-a", "127.0.0.11"), ("zone-b", "127.0.0.12")])
        .instance(common::instance("i-a", "zone-a", &a))
        .instance(common::instance("i-b", "zone-b", &b))
        .start()
        .await;
    // Traffic while the page is open, so its request rate is not zero.
    let (node_a, node_b) = (elbe.node("zone-a"), elbe.node("zone-b"));
    let traffic = tokio::spawn(async move {
        loop {
            common::get(node_a, "/").await;
            common::get(node_b, "/missing").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let url = format!("http://{}/", elbe.admin());
    let head = common::get(elbe.admin(), "/").await;
    let policy = head.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");

    let profile = tempfile::tempdir().unwrap();
    let (mut chromium, browser) = start_chromium(profile.path()).await;
    let mut page = open(&browser, &url).await;

    page.wait_for(
        "both instances InService",
        &format!("JSON.parse({INSTANCE_STATES}).map(r => r.slice(0, 2).join()).join() == 'i-a,InService,i-b,InService'"),
    )
    .await;
    assert_eq!(page.eval("document.documentElement.lang").await, "en");
    assert_eq!(
        page.eval("document.getElementById('cluster').hidden").await,
        true,
        "no cluster section without [cluster]"
    );
    let text = page.eval("document.body.innerText").await;
    let text = text.as_str().unwrap();
    let dns_name = elbe.server().status().load_balancers[0].dns_name.clone();
    for shown in [
        "web",
        &dns_name,
        "zone-a",
        "zone-b",
        "HTTP 127.0.0.11:",
        "N/A",
    ] {
        assert!(
            text.contains(shown),
            "the page does not show {shown:?}:\n{text}"
        );
    }
    // The rate comes from two samples of the counters, 2 s apart.
    page.wait_for(
        "a request rate above zero",
        "[...document.querySelectorAll('#load-balancers tbody tr')].some(r => parseFloat(r.cells[3]?.innerText) > 0)",
    )
    .await;

    // The flip: i-b's backend stops, its TCP checks fail twice (100 ms apart), and the page, never reloaded, shows it.
    page.eval("window.notReloaded = true").await;
    drop(b);
    page.wait_for(
        "i-b OutOfService with ELB's description",
        &format!("JSON.parse({INSTANCE_STATES}).some(r => r[0] == 'i-b' && r[1] == 'OutOfService'
            && r[2].includes('Instance has failed at least the UnhealthyThreshold number of health checks consecutively.'))"),
    )
    .await;
    page.wait_for(
        "the change under recent state changes",
        "[...document.querySelectorAll('#changes tbody tr')][0]?.innerText.includes('i-b')",
    )
    .await;
    assert_eq!(
        page.eval("window.notReloaded === true").await,
        true,
        "the page reloaded"
    );
    let states = page.eval(INSTANCE_STATES).await;
    assert!(
        states.as_str().unwrap().contains(r#"["i-a","InService""#),
        "{states}"
    );

    let png = screenshot(&mut page).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    write(root.join("target/status-page.png"), &png);
    write(root.join("docs/status-page.png"), &png);

    // Readable at 320 px: nothing makes the page itself scroll sideways (wide tables scroll in their own box).
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": true }),
    )
    .await;
    page.wait_for(
        "a layout that fits 320 px",
        "window.innerWidth == 320 && document.documentElement.scrollWidth <= 320",
    )
    .await;

    traffic.abort();
    chromium.kill().await.ok();
    drop(a);
    elbe.shutdown().await;
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_the_status_page_shows_the_members_their_views_and_whether_etcd_answers() {
    let mut etcd = etcd_support::Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = |zone| run_support::cluster_file(dir.path(), &etcd.endpoint(), "127.86.1", zone);
    let a = run_support::Elbe::start(&config("zone-a")).await;
    let b = run_support::Elbe::start(&config("zone-b")).await;
    let backend = Backend::start(Behaviour::Echo).await;
    run_support::registered(a.admin, "web", "i-c", "zone-a", backend.address).await;

    let profile = tempfile::tempdir().unwrap();
    let (mut chromium, browser) = start_chromium(profile.path()).await;
    let mut page = open(&browser, &format!("http://{}/", a.admin)).await;
    page.wait_for(
        "both members listed, this process first",
        "(() => { const rows = [...document.querySelectorAll('#cluster tr[data-member]')];
            return document.getElementById('cluster')?.hidden === false && rows.length == 2
              && rows[0].dataset.member == 'elbe-zone-a' && rows[0].innerText.includes('(this process)')
              && rows[1].dataset.member == 'elbe-zone-b' && rows[1].innerText.includes('127.86.1.2'); })()",
    )
    .await;
    page.wait_for(
        "the store reachable",
        "document.querySelector('#store [data-reachable]')?.dataset.reachable == 'true'
            && document.getElementById('store').innerText.includes('State store (etcd)')",
    )
    .await;
    page.wait_for(
        "each member's view of i-c, both InService",
        "(() => { const row = document.querySelector('tr[data-instance=\"i-c\"]');
            const views = row && row.cells[row.cells.length - 1].innerText;
            return !!views && /elbe-zone-a\\s+\\S*\\s*InService/.test(views)
              && /elbe-zone-b\\s+\\S*\\s*InService/.test(views); })()",
    )
    .await;
    let png = screenshot(&mut page).await;
    write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page-cluster.png"),
        &png,
    );
    let summary = page
        .eval("document.getElementById('summary').innerText")
        .await;
    assert!(
        summary.as_str().unwrap().contains("2 cluster member(s)"),
        "{summary}"
    );

    // etcd stops: the page, never reloaded, says so and what it means for API writes.
    page.eval("window.notReloaded = true").await;
    etcd.kill();
    page.wait_for(
        "the store unreachable",
        "document.querySelector('#store [data-reachable]')?.dataset.reachable == 'false'
            && document.getElementById('store').innerText.includes('API writes answer 503')
            && document.getElementById('summary').innerText.includes('state store unreachable')
            && window.notReloaded === true",
    )
    .await;

    chromium.kill().await.ok();
    drop((a, b, backend));
}
