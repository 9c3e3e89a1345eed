//! The floating-IP pair (DESIGN.md "A floating-IP pair", issue 16 item 6) fails over, with real keepalived.
//!
//! Three network namespaces are the machines: `a` (198.18.0.1) and `b` (198.18.0.2), each with an instance on
//! its loopback, an elbe whose node listens on the floating IP 198.18.0.100 with `freebind`, and keepalived
//! running `examples/keepalived/` (templated with these addresses and paths); and `c` (198.18.0.3), the client,
//! whose bridge joins the three. 198.18.0.0/15 is RFC 2544's benchmarking range: no real network uses it. The
//! client loops requests to the VIP; each answer names the machine whose instance made it. Shown: the VIP serves
//! through the master; stopping the master's instance (its `/healthz` fails) and `kill -9` of its elbe each move
//! the VIP to the standby, which answers within 10 s; the failed requests of each failover all fall inside that
//! window, at most one per client interval of it, and are printed.

mod netns;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use netns::Netns;
use tokio::time::Instant;

const VIP: &str = "198.18.0.100";
/// Where the example files say the pair lives, and where the test puts it (the examples must keep these).
const EXAMPLE_MASTER: &str = "10.0.0.11";
const EXAMPLE_BACKUP: &str = "10.0.0.12";
const EXAMPLE_VIP: &str = "10.0.0.100";
/// What the standby must do within, after the master fails (the issue's bound).
const FAILOVER: Duration = Duration::from_secs(10);
/// The client starts a request this often.
const PACE: Duration = Duration::from_millis(50);

/// One client request's outcome: which machine's instance answered, or why it failed.
type Outcome = Result<String, String>;

/// One machine: its namespace, address, folder and processes.
struct Machine {
    // Processes first: fields drop in order, and the namespace goes last.
    keepalived: Option<Child>,
    elbe: Option<Child>,
    instance: Option<tokio::task::JoinHandle<()>>,
    dir: PathBuf,
    address: &'static str,
    name: &'static str,
    ns: Netns,
}

impl Drop for Machine {
    fn drop(&mut self) {
        for child in [self.keepalived.as_mut(), self.elbe.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(instance) = &self.instance {
            instance.abort();
        }
    }
}

impl Machine {
    /// The instance on 127.0.0.1:8000 in this machine: every answer is its machine's name.
    fn start_instance(&mut self) {
        let listener = self
            .ns
            .enter(|| std::net::TcpListener::bind("127.0.0.1:8000").unwrap());
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let name = self.name;
        self.instance = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, name));
            }
        }));
    }

    /// Stops the instance: its socket closes, so connects are refused and elbe's health checks fail.
    fn stop_instance(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance.abort();
        }
    }

    fn start_elbe(&mut self) {
        let config = self.dir.join("elbe.toml");
        std::fs::write(&config, elbe_config(&self.dir)).unwrap();
        let elbe = Path::new(env!("CARGO_BIN_EXE_elbe"));
        let config = config.display().to_string();
        self.elbe = Some(self.ns.spawn(
            elbe,
            &["run", "--config", &config],
            &self.dir.join("elbe.log"),
        ));
    }

    /// keepalived from the example files: `conf` templated with the test's addresses and this machine's folder.
    fn start_keepalived(&mut self, conf: &str, peer: &str) {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keepalived");
        let dir = self.dir.display().to_string();
        let example = |file: &str| {
            std::fs::read_to_string(examples.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let (own, other) = if conf.contains("master") {
            (EXAMPLE_MASTER, EXAMPLE_BACKUP)
        } else {
            (EXAMPLE_BACKUP, EXAMPLE_MASTER)
        };
        let text = template(
            &example(conf),
            &[
                (
                    &format!("unicast_src_ip {own}"),
                    &format!("unicast_src_ip {}", self.address),
                ),
                (&format!("        {other}\n"), &format!("        {peer}\n")),
                (EXAMPLE_VIP, VIP),
                ("/etc/keepalived/", &format!("{dir}/")),
            ],
        );
        std::fs::write(self.dir.join("keepalived.conf"), text).unwrap();
        let notify = template(
            &example("elbe-notify.sh"),
            &[("/run/elbe-vrrp", &format!("{dir}/vrrp"))],
        );
        write_script(&self.dir.join("elbe-notify.sh"), &notify);
        write_script(
            &self.dir.join("elbe-healthz.sh"),
            &example("elbe-healthz.sh"),
        );
        let keepalived = netns::find("keepalived").unwrap();
        let args = [
            "--dont-fork".to_owned(),
            "--log-console".to_owned(),
            "--log-detail".to_owned(),
            "--vrrp".to_owned(),
            format!("--use-file={dir}/keepalived.conf"),
            format!("--pid={dir}/keepalived.pid"),
            format!("--vrrp_pid={dir}/vrrp.pid"),
            format!("--checkers_pid={dir}/checkers.pid"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.keepalived = Some(
            self.ns
                .spawn(&keepalived, &args, &self.dir.join("keepalived.log")),
        );
    }

    /// The VRRP state the notify script last wrote (MASTER, BACKUP, FAULT), empty before the first.
    fn vrrp_state(&self) -> String {
        std::fs::read_to_string(self.dir.join("vrrp/state"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// `/healthz` on this machine's elbe: its status code and body.
    fn healthz(&self) -> Outcome {
        self.ns
            .enter(|| get("127.0.0.1:9900".parse().unwrap(), "/healthz").map(|(_, body)| body))
    }

    /// The logs, for a failure message.
    fn logs(&self) -> String {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        format!(
            "--- {0} elbe.log\n{1}\n--- {0} keepalived.log\n{2}",
            self.name,
            read("elbe.log"),
            read("keepalived.log")
        )
    }
}

/// `text` with each `(from, to)` replaced; each `from` must be there, so an example that changes fails here.
fn template(text: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "the example lost {from:?}; the test templates it"
        );
        text = text.replace(from, to);
    }
    text
}

/// A script keepalived will run as root: owned by root (this process) and not writable by others.
fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// elbe on one machine: the node on the VIP with freebind, the admin listener where elbe-healthz.sh looks
/// (a fixed port is safe: each namespace has its own loopback), fast health checks so a dead instance shows.
fn elbe_config(dir: &Path) -> String {
    format!(
        r#"state_dir = "{state}"
[admin]
listen = "127.0.0.1:9900"
[limits]
shutdown_grace = "1s"
[[load_balancer]]
name = "web"
[load_balancer.health_check]
target = "HTTP:8000/health"
interval = "300ms"
timeout = "200ms"
healthy_threshold = 2
unhealthy_threshold = 2
[[load_balancer.availability_zone]]
name = "zone-a"
node = "{VIP}"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 80
instance_protocol = "HTTP"
instance_port = 8000
freebind = true
[[load_balancer.instance]]
id = "i-1"
zone = "zone-a"
address = "127.0.0.1"
"#,
        state = dir.join("state").display()
    )
}

/// The instance: reads one request head, answers 200 with the machine's name, closes.
async fn answer(mut stream: tokio::net::TcpStream, name: &'static str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
        name.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// One HTTP/1.1 GET with `Connection: close` and short timeouts: the status and body, or why it failed.
fn get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    match status {
        200 => Ok((status, body)),
        _ => Err(format!("{status} {}", body.trim())),
    }
}

/// The client in namespace `c`: a request to the VIP every [`PACE`] until `stop`, each outcome sent with the time
/// it ended.
fn client(
    c: &Netns,
    stop: Arc<AtomicBool>,
) -> (
    mpsc::Receiver<(Instant, Outcome)>,
    std::thread::JoinHandle<()>,
) {
    let (send, receive) = mpsc::channel();
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let handle = c.thread(move || {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let outcome = get(vip, "/").map(|(_, body)| body);
            if send.send((Instant::now(), outcome)).is_err() {
                return;
            }
            // Pacing, not waiting for something: one request per PACE, so failures count time, not retries.
            if let Some(rest) = PACE.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    });
    (receive, handle)
}

/// What the client saw from `since` until `machine` answered: the failures, and when it answered.
struct Failover {
    failed: Vec<String>,
    took: Duration,
}

/// Reads the client's outcomes until `machine` answers (within `within` of `since`), then checks that the next
/// `settle` requests all succeed through it.
async fn until_served_by(
    outcomes: &mpsc::Receiver<(Instant, Outcome)>,
    machine: &str,
    since: Instant,
    within: Duration,
    pair: &[&Machine],
) -> Failover {
    let mut failed = Vec::new();
    let took = loop {
        let (at, outcome) = next(outcomes, since + within, pair).await;
        match outcome {
            Ok(answer) if answer == machine => break at - since,
            Ok(_) => {}
            Err(why) => failed.push(why),
        }
    };
    for n in 0..20 {
        let (_, outcome) = next(outcomes, Instant::now() + FAILOVER, pair).await;
        assert_eq!(
            outcome.as_deref(),
            Ok(machine),
            "request {n} after {machine} took over{}",
            dump(pair)
        );
    }
    Failover { failed, took }
}

/// The client's next outcome, polled until `deadline`.
async fn next(
    outcomes: &mpsc::Receiver<(Instant, Outcome)>,
    deadline: Instant,
    pair: &[&Machine],
) -> (Instant, Outcome) {
    loop {
        match outcomes.try_recv() {
            Ok(seen) => {
                assert!(
                    seen.0 <= deadline,
                    "no answer from the expected machine in time{}",
                    dump(pair)
                );
                return seen;
            }
            Err(mpsc::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "the client stopped answering{}",
                    dump(pair)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                panic!("the client thread ended{}", dump(pair))
            }
        }
    }
}

/// Polls `check` every 50 ms until it holds or `within` passes.
async fn eventually(
    what: &str,
    within: Duration,
    pair: &[&Machine],
    mut check: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}{}",
            dump(pair)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dump(pair: &[&Machine]) -> String {
    let states: Vec<String> = pair
        .iter()
        .map(|m| format!("{}: {:?}", m.name, m.vrrp_state()))
        .collect();
    let logs: Vec<String> = pair.iter().map(|m| m.logs()).collect();
    format!("\nvrrp states {states:?}\n{}", logs.join("\n"))
}

/// The failures of one failover are bounded by its window: at most one per client interval, plus the one in
/// flight when it began.
fn assert_bounded(what: &str, failover: &Failover) {
    let bound = (failover.took.as_secs_f64() / PACE.as_secs_f64()).ceil() as usize + 1;
    assert!(
        failover.took <= FAILOVER,
        "{what}: the standby answered after {:?}",
        failover.took
    );
    assert!(
        failover.failed.len() <= bound,
        "{what}: {} failed requests in a {:?} window (at most {bound}): {:?}",
        failover.failed.len(),
        failover.took,
        failover.failed
    );
    println!(
        "{what}: the standby answered {:.2} s after; {} client requests failed: {}",
        failover.took.as_secs_f64(),
        failover.failed.len(),
        reasons(&failover.failed)
    );
}

/// "27 x 503, 2 x connect: connection timed out": each reason once, with how often, in order of first sight.
fn reasons(failed: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for why in failed {
        match counted.iter_mut().find(|(seen, _)| *seen == why.as_str()) {
            Some((_, n)) => *n += 1,
            None => counted.push((why, 1)),
        }
    }
    let parts: Vec<String> = counted
        .iter()
        .map(|(why, n)| format!("{n} x {}", why.trim()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn preflight() {
    netns::require_root();
    for (program, package) in [
        ("ip", "iproute2"),
        ("keepalived", "keepalived"),
        ("curl", "curl"),
    ] {
        assert!(
            netns::find(program).is_some(),
            "{program} is missing: apt-get install {package} (./test.sh installs it)"
        );
    }
}

/// The three machines on one bridge in `c`.
fn network(tag: &str, dir: &Path) -> (Machine, Machine, Netns) {
    let c = Netns::add(format!("{tag}-c"));
    c.ip(&["link", "add", "br0", "type", "bridge"]);
    c.ip(&["link", "set", "br0", "up"]);
    c.ip(&["addr", "add", "198.18.0.3/24", "dev", "br0"]);
    let machine = |name: &'static str, address: &'static str| {
        let ns = Netns::add(format!("{tag}-{name}"));
        let port = format!("p{name}");
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &c.name,
        ]);
        c.ip(&["link", "set", &port, "master", "br0"]);
        c.ip(&["link", "set", &port, "up"]);
        ns.ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Machine {
            keepalived: None,
            elbe: None,
            instance: None,
            dir,
            address,
            name,
            ns,
        }
    };
    (machine("a", "198.18.0.1"), machine("b", "198.18.0.2"), c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_the_floating_ip_when_the_master_cannot_serve() {
    preflight();
    // keepalived runs these scripts as root only from folders no one else may write: not /tmp.
    let dir = tempfile::Builder::new()
        .prefix("failover-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let (mut a, mut b, c) = network(&format!("elbe-vip{}", std::process::id()), dir.path());

    for machine in [&mut a, &mut b] {
        machine.start_instance();
        machine.start_elbe();
    }
    for machine in [&a, &b] {
        eventually("/healthz 200", Duration::from_secs(20), &[&a, &b], || {
            machine.healthz().is_ok()
        })
        .await;
    }
    // The standby listens on the VIP before it holds it: freebind.
    assert!(!b.ns.holds(VIP) && !a.ns.holds(VIP));
    a.start_keepalived("keepalived-master.conf", b.address);
    b.start_keepalived("keepalived-backup.conf", a.address);
    eventually(
        "a MASTER, b BACKUP",
        Duration::from_secs(20),
        &[&a, &b],
        || a.vrrp_state() == "MASTER" && b.vrrp_state() == "BACKUP",
    )
    .await;
    assert!(
        a.ns.holds(VIP) && !b.ns.holds(VIP),
        "the master holds the VIP{}",
        dump(&[&a, &b])
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, client) = client(&c, stop.clone());
    until_served_by(
        &outcomes,
        "a",
        Instant::now(),
        Duration::from_secs(20),
        &[&a, &b],
    )
    .await;

    // 1. The master's instance stops: its elbe answers 503, its /healthz fails, keepalived gives up the VIP.
    let since = Instant::now();
    a.stop_instance();
    let failover = until_served_by(&outcomes, "b", since, FAILOVER, &[&a, &b]).await;
    assert_bounded("instance stopped on the master", &failover);
    assert_eq!(
        (a.vrrp_state(), b.vrrp_state()),
        ("FAULT".to_owned(), "MASTER".to_owned())
    );
    assert!(b.ns.holds(VIP) && !a.ns.holds(VIP));
    let reason = a.healthz().unwrap_err();
    assert!(
        reason.contains("503") && reason.contains("no InService instance"),
        "{reason}"
    );

    // The instance comes back: the master is healthy again and takes the VIP back (it has the higher priority).
    let since = Instant::now();
    a.start_instance();
    let back = until_served_by(&outcomes, "a", since, Duration::from_secs(20), &[&a, &b]).await;
    println!(
        "the master back: it answered {:.2} s after its instance returned; {} client requests failed: {}",
        back.took.as_secs_f64(),
        back.failed.len(),
        reasons(&back.failed)
    );

    // 2. kill -9 of the master's elbe: nothing answers /healthz there, keepalived gives up the VIP.
    let since = Instant::now();
    if let Some(elbe) = a.elbe.as_mut() {
        elbe.kill().unwrap();
        elbe.wait().unwrap();
    }
    let failover = until_served_by(&outcomes, "b", since, FAILOVER, &[&a, &b]).await;
    assert_bounded("kill -9 of the master's elbe", &failover);
    assert_eq!(
        (a.vrrp_state(), b.vrrp_state()),
        ("FAULT".to_owned(), "MASTER".to_owned())
    );

    stop.store(true, Ordering::Relaxed);
    drop(outcomes);
    client.join().unwrap();
}

/// The pair's elbe file is valid as shipped, and its node listens on the floating IP with freebind (what lets the
/// backup serve the moment the address arrives). Needs no root: `elbe check` only reads it.
#[test]
fn the_example_elbe_file_listens_on_the_floating_ip_with_freebind() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keepalived/elbe.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elbe"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("node = \"{EXAMPLE_VIP}\"")));
    assert!(text.contains("freebind = true"));
    assert!(
        text.contains("listen = \"127.0.0.1:9900\""),
        "where elbe-healthz.sh looks"
    );
}
