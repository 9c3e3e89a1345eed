//! DNS discovery against a real DNS server (dnsmasq): an instance given as `host:port` follows its record.
mod common;

use std::time::Duration;

use common::*;

/// A port that is free on 127.0.0.1 for both TCP and UDP right now.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// dnsmasq serving `backend.test` from a hosts file, on 127.0.0.1 and a free port; stopped on drop.
struct Dnsmasq {
    child: tokio::process::Child,
    hosts: std::path::PathBuf,
    port: u16,
}

impl Dnsmasq {
    async fn start(dir: &std::path::Path, address: &str) -> Dnsmasq {
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, format!("{address} backend.test\n")).unwrap();
        // A port free for both UDP and TCP can still be taken before dnsmasq binds it: try a few ports.
        for _ in 0..5 {
            let port = free_port();
            let mut child = tokio::process::Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                ])
                .args([
                    "--pid-file=",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                ])
                // TTL 0: the answer is not cached, so elbe asks again after its min_ttl (200 ms), not a second.
                .args(["--local-ttl=0", "--user=root"])
                .arg(format!("--port={port}"))
                .arg(format!("--addn-hosts={}", hosts.display()))
                .kill_on_drop(true)
                .spawn()
                .expect("dnsmasq runs (./test.sh installs dnsmasq-base)");
            // Ready once it accepts on its TCP port (a query sent before it listens would wait out the
            // resolver's timeout).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while tokio::time::Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break; // it could not bind: try another port
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Dnsmasq { child, hosts, port };
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("dnsmasq did not start");
    }

    /// Points backend.test at `address` and tells dnsmasq to re-read its hosts file.
    async fn point_to(&self, address: &str) {
        std::fs::write(&self.hosts, format!("{address} backend.test\n")).unwrap();
        // The signal is sent from Rust: the `kill` program (procps) is not on a minimal Debian.
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_follows_its_dns_record_without_failed_requests() {
    let dir = std::env::temp_dir().join(format!("elbe-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two instances on the same port at two addresses: what the name will point at, before and after.
    let first = tokio::net::TcpListener::bind("127.0.0.31:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let second = tokio::net::TcpListener::bind(("127.0.0.32", port))
        .await
        .unwrap();
    let before = Backend::serve(first, Behaviour::Echo);
    let after = Backend::serve(second, Behaviour::Echo);
    let dnsmasq = Dnsmasq::start(&dir, "127.0.0.31").await;

    let mut builder = ConfigBuilder::new();
    builder.top.push_str(&format!(
        "[discovery]\nname_servers = [\"127.0.0.1:{}\"]\nmin_ttl = \"200ms\"\nmax_ttl = \"1s\"\n\n",
        dnsmasq.port
    ));
    let text = format!(
        "{}\n[[load_balancer.instance]]\nid = \"i-dns\"\nzone = \"zone-a\"\naddress = \"backend.test:{port}\"\n",
        builder.toml()
    );
    let config = elbe::config::parse(&text, std::path::Path::new("test.toml")).unwrap();
    let server = elbe::server::start(config)
        .await
        .expect("elbe starts and resolves backend.test");
    let elbe = Elbe {
        server: Some(server),
    };
    elbe.wait_for_first_checks().await;
    let node = elbe.node("zone-a");

    let mut failures = Vec::new();
    for _ in 0..20 {
        let status = get(node, "/").await.status;
        if status != 200 {
            failures.push(status);
        }
    }
    assert_eq!((before.requests(), after.requests()), (20, 0));

    dnsmasq.point_to("127.0.0.32").await;
    bounded(Duration::from_secs(10), async {
        while after.requests() == 0 {
            let status = get(node, "/").await.status;
            if status != 200 {
                failures.push(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let old = before.requests();
    for _ in 0..20 {
        let status = get(node, "/").await.status;
        if status != 200 {
            failures.push(status);
        }
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(
        before.requests(),
        old,
        "the removed address gets no new requests"
    );
    assert!(after.requests() >= 20);
    drop(dnsmasq);
    std::fs::remove_dir_all(&dir).ok();
}
