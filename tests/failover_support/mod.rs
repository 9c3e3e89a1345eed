//! One machine of the failover test: a network namespace with an instance, an elbe whose node listens on the
//! floating IP with freebind, and keepalived from `examples/keepalived/`; and the plain HTTP both ends speak.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::netns::{self, Netns};
use super::{Outcome, EXAMPLE_BACKUP, EXAMPLE_MASTER, EXAMPLE_VIP, VIP};

/// One machine: its namespace, address, folder and processes.
pub(crate) struct Machine {
    // Processes first: fields drop in order, and the namespace goes last.
    pub(crate) keepalived: Option<Child>,
    pub(crate) elbe: Option<Child>,
    pub(crate) instance: Option<tokio::task::JoinHandle<()>>,
    pub(crate) dir: PathBuf,
    pub(crate) address: &'static str,
    pub(crate) name: &'static str,
    pub(crate) ns: Netns,
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
    pub(crate) fn start_instance(&mut self) {
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
    pub(crate) fn stop_instance(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance.abort();
        }
    }

    pub(crate) fn start_elbe(&mut self) {
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
    pub(crate) fn start_keepalived(&mut self, conf: &str, peer: &str) {
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
    pub(crate) fn vrrp_state(&self) -> String {
        std::fs::read_to_string(self.dir.join("vrrp/state"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// `/healthz` on this machine's elbe: its status code and body.
    pub(crate) fn healthz(&self) -> Outcome {
        self.ns
            .enter(|| get("127.0.0.1:9900".parse().unwrap(), "/healthz").map(|(_, body)| body))
    }

    /// The logs, for a failure message.
    pub(crate) fn logs(&self) -> String {
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
pub(crate) fn get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
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

/// The three machines on one bridge in `c`.
pub(crate) fn network(tag: &str, dir: &Path) -> (Machine, Machine, Netns) {
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
