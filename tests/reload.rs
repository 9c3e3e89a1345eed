//! Reload (SIGHUP and `Server::reload_from`) applies every change by swapping snapshots (issue 13, item 5): load
//! balancers, zones, listeners, instances, health checks, policies, rules and attributes. Listeners that stay are
//! not rebound; removed ones stop accepting and drain; new ones bind, and a bind failure refuses the whole reload;
//! the DNS responder follows. Real sockets, configuration files in a temporary folder, elbe on port 0; every wait
//! polls with a deadline.

mod common;
mod process;
mod reload_setup;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reload_setup::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------------------------
// Each kind of change
// ---------------------------------------------------------------------------------------------------------------

/// A load balancer added by a reload binds its listeners, checks its instances, serves, and gets its DNS name; one
/// removed stops accepting and its DNS name goes away (NXDOMAIN: dig answers nothing).
#[tokio::test]
async fn load_balancers_added_and_removed_and_the_dns_responder_follows() {
    bounded(Duration::from_secs(60), async {
        let web_backend = Backend::start(Behaviour::Echo).await;
        let api_backend = Backend::start(Behaviour::Echo).await;
        let web = Lb::new("web", "127.0.0.1").instance("i-web", &web_backend);
        let mut setup = Setup::new(vec![web.clone()]);
        setup.dns = true;
        let elbe = Reloading::start(&setup).await;
        let dns = elbe
            .elbe
            .server()
            .dns_address()
            .expect("the responder runs");
        let status = elbe.status().await;
        let web_name = dns_name(&status, "web");
        assert_eq!(dig(dns, &web_name).await, ["127.0.0.1"]);

        let api = Lb::new("api", "127.0.0.2").instance("i-api", &api_backend);
        setup.lbs.push(api);
        elbe.reload(&setup).await.expect("adding a load balancer");
        let api_node = elbe.listeners("api")[0];
        assert_eq!(api_node.ip().to_string(), "127.0.0.2");
        wait_until("the new load balancer's instance InService", || async {
            instance_ids(&elbe.status().await, "api") == [("i-api".into(), "InService".into())]
        })
        .await;
        let (code, _) = try_get(api_node, "/api").await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(api_backend.requests(), 1);
        let api_name = dns_name(&elbe.status().await, "api");
        assert_eq!(dig(dns, &api_name).await, ["127.0.0.2"]);

        let web_node = elbe.listeners("web")[0];
        setup.lbs.remove(0);
        elbe.reload(&setup).await.expect("removing a load balancer");
        let status = elbe.status().await;
        assert!(
            status["load_balancers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["name"] != "web"),
            "{status}"
        );
        assert!(elbe.listeners("web").is_empty());
        wait_until("the removed load balancer's listener refuses", || {
            refused(web_node)
        })
        .await;
        assert!(dig(dns, &web_name).await.is_empty(), "web's name is gone");
        assert_eq!(dig(dns, &api_name).await, ["127.0.0.2"]);
        assert_eq!(try_get(api_node, "/still").await.unwrap().0, 200);
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// A removed load balancer's requests in flight drain by its own `connection_draining`: with it on the request
/// finishes (200); with it off it is cut at once with ELB's 504.
#[tokio::test]
async fn a_removed_load_balancer_drains_by_its_connection_draining() {
    bounded(Duration::from_secs(60), async {
        let slow = Backend::start(Behaviour::Slow(Duration::from_millis(1500))).await;
        let mut draining = Lb::new("draining", "127.0.0.1").instance("i-d", &slow);
        draining.extra = "connection_draining = { enabled = true, timeout = \"10s\" }\n".into();
        let mut cut = Lb::new("cut", "127.0.0.4").instance("i-c", &slow);
        cut.extra = "connection_draining = { enabled = false }\n".into();
        let keeper = Backend::start(Behaviour::Echo).await;
        let kept = Lb::new("kept", "127.0.0.5").instance("i-k", &keeper);
        let elbe = Reloading::start(&Setup::new(vec![draining, cut, kept.clone()])).await;
        let finishing = tokio::spawn(try_get(elbe.listeners("draining")[0], "/drains"));
        let cutting = tokio::spawn(try_get(elbe.listeners("cut")[0], "/cut"));
        wait_until("both requests reached the instance", || async {
            slow.requests() == 2
        })
        .await;

        elbe.reload(&Setup::new(vec![kept])).await.expect("reload");
        let (code, _) = cutting.await.unwrap().expect("an answer");
        assert_eq!(code, 504, "draining off: cut with ELB's 504");
        let (code, _) = finishing.await.unwrap().expect("an answer");
        assert_eq!(code, 200, "draining on: the request finishes");
        let status = elbe.status().await;
        let names: Vec<&str> = status["load_balancers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["name"].as_str())
            .collect();
        assert_eq!(names, ["kept"]);
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// A zone added binds its node's listener and joins the DNS answer; a zone removed leaves both.
#[tokio::test]
async fn zones_added_and_removed() {
    bounded(Duration::from_secs(60), async {
        let backend = Backend::start(Behaviour::Echo).await;
        let mut web = Lb::new("web", "127.0.0.1").instance("i-a", &backend);
        let mut setup = Setup::new(vec![web.clone()]);
        setup.dns = true;
        let elbe = Reloading::start(&setup).await;
        let dns = elbe.elbe.server().dns_address().unwrap();
        let name = format!("all.{}", dns_name(&elbe.status().await, "web"));
        let node_a = elbe.listeners("web")[0];

        web.zones.push(("zone-b".into(), "127.0.0.3".into()));
        setup.lbs = vec![web.clone()];
        elbe.reload(&setup).await.expect("adding a zone");
        let nodes = elbe.listeners("web");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0], node_a, "zone-a's listener is the same socket");
        assert_eq!(nodes[1].ip().to_string(), "127.0.0.3");
        assert_eq!(dig(dns, &name).await, ["127.0.0.1", "127.0.0.3"]);
        // zone-b has no instance of its own: its node sends to zone-a's (ELB-SPEC §3).
        assert_eq!(try_get(nodes[1], "/b").await.unwrap().0, 200);

        web.zones.remove(0);
        web.instances[0].1 = "zone-b".into();
        setup.lbs = vec![web];
        elbe.reload(&setup).await.expect("removing a zone");
        assert_eq!(elbe.listeners("web"), [nodes[1]]);
        wait_until("zone-a's listener refuses", || refused(node_a)).await;
        assert_eq!(dig(dns, &name).await, ["127.0.0.3"]);
        wait_until("i-a InService in zone-b", || async {
            instance_ids(&elbe.status().await, "web") == [("i-a".into(), "InService".into())]
        })
        .await;
        assert_eq!(try_get(nodes[1], "/b").await.unwrap().0, 200);
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// A listener that stays is the same socket: the same address, and a keep-alive connection opened before the
/// reload carries requests after it, to the instance the reload added.
#[tokio::test]
async fn a_listener_kept_is_not_rebound_and_its_open_connection_keeps_working() {
    bounded(Duration::from_secs(60), async {
        let first = Backend::start(Behaviour::Echo).await;
        let second = Backend::start(Behaviour::Echo).await;
        let mut web = Lb::new("web", "127.0.0.1").instance("i-1", &first);
        let setup = Setup::new(vec![web.clone()]);
        let elbe = Reloading::start(&setup).await;
        let before = elbe.listeners("web");
        let mut open = keep_alive(before[0]).await;
        assert_eq!(send_on(&mut open, "/before").await, Ok(200));

        // A new instance, the old one removed without draining, a new idle timeout, a second listener.
        web.instances = vec![("i-2".into(), "zone-a".into(), second.address)];
        web.extra = "idle_timeout = \"30s\"\n".into();
        web.listeners.push(HTTP.into());
        elbe.reload(&Setup::new(vec![web])).await.expect("reload");
        let after = elbe.listeners("web");
        assert_eq!(after.len(), 2);
        assert_eq!(after[0], before[0], "the kept listener was not rebound");
        wait_until("i-2 InService", || async {
            instance_ids(&elbe.status().await, "web") == [("i-2".into(), "InService".into())]
        })
        .await;
        assert_eq!(send_on(&mut open, "/after").await, Ok(200));
        assert_eq!(
            second.requests(),
            1,
            "the open connection follows the new routes"
        );
        assert_eq!(try_get(after[1], "/new").await.unwrap().0, 200);
        let status = elbe.status().await;
        assert_eq!(status["config"]["generation"], 2);
        assert_eq!(listener_addresses(&status, "web").len(), 2);
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// A removed listener refuses new connections at once, while the request in flight on it finishes (200) and its
/// idle keep-alive connection is closed.
#[tokio::test]
async fn a_removed_listener_refuses_new_connections_while_its_in_flight_request_finishes() {
    bounded(Duration::from_secs(60), async {
        let backend = Backend::start(Behaviour::Slow(Duration::from_millis(1500))).await;
        let mut web = Lb::new("web", "127.0.0.1").instance("i-a", &backend);
        web.listeners.push(HTTP.into());
        let elbe = Reloading::start(&Setup::new(vec![web.clone()])).await;
        let [kept, removed] = elbe.listeners("web")[..] else {
            panic!("two listeners");
        };
        let idle = {
            let mut idle = TcpStream::connect(removed).await.unwrap();
            idle.write_all(b"GET /idle HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let head = read_response(&mut idle, WAIT).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            idle
        };
        let in_flight = tokio::spawn(try_get(removed, "/in-flight"));
        wait_until("the slow request reached the instance", || async {
            backend.requests() == 2
        })
        .await;

        web.listeners.pop();
        elbe.reload(&Setup::new(vec![web])).await.expect("reload");
        assert_eq!(elbe.listeners("web"), [kept]);
        wait_until("the removed listener refuses", || refused(removed)).await;
        let (code, _) = in_flight
            .await
            .unwrap()
            .expect("the in-flight request finishes");
        assert_eq!(code, 200);
        // The idle keep-alive connection was closed by the drain.
        let mut idle = idle;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, idle.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "idle connection closed: {read:?}"
        );
        assert_eq!(try_get(kept, "/kept").await.unwrap().0, 200);
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// A new listener whose port is taken refuses the whole reload: nothing else in the file is applied, the old
/// configuration keeps serving, and `/status` says why.
#[tokio::test]
async fn a_bind_conflict_refuses_the_reload_and_the_old_configuration_keeps_serving() {
    bounded(Duration::from_secs(60), async {
        let backend = Backend::start(Behaviour::Echo).await;
        let other = Backend::start(Behaviour::Echo).await;
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut web = Lb::new("web", "127.0.0.1").instance("i-a", &backend);
        let elbe = Reloading::start(&Setup::new(vec![web.clone()])).await;
        let before = elbe.listeners("web");
        let generation = elbe.status().await["config"]["generation"].clone();

        web.listeners.push(HTTP.replace(
            "load_balancer_port = 0",
            &format!("load_balancer_port = {port}"),
        ));
        web.instances
            .push(("i-b".into(), "zone-a".into(), other.address));
        let error = elbe
            .reload(&Setup::new(vec![web]))
            .await
            .expect_err("the port is taken")
            .to_string();
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        let status = elbe.status().await;
        assert_eq!(status["config"]["generation"], generation);
        let reported = status["config"]["last_reload_error"]
            .as_str()
            .unwrap_or_default();
        assert!(reported.contains(&format!("127.0.0.1:{port}")), "{status}");
        assert_eq!(
            instance_ids(&status, "web"),
            [("i-a".into(), "InService".into())]
        );
        assert_eq!(elbe.listeners("web"), before);
        for n in 0..5 {
            assert_eq!(try_get(before[0], &format!("/{n}")).await.unwrap().0, 200);
        }
        assert_eq!(other.requests(), 0);
        drop(taken);
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// What only a restart changes (here the admin listener's address) refuses the reload and is named.
#[tokio::test]
async fn a_restart_only_setting_refuses_the_reload_by_name() {
    bounded(Duration::from_secs(30), async {
        let backend = Backend::start(Behaviour::Echo).await;
        let web = Lb::new("web", "127.0.0.1").instance("i-a", &backend);
        let mut setup = Setup::new(vec![web]);
        let elbe = Reloading::start(&setup).await;
        setup.admin = "127.0.0.1:1".into();
        let error = elbe.reload(&setup).await.expect_err("admin.listen changed");
        assert_eq!(
            error.to_string(),
            "admin.listen changed: a reload does not apply it (restart elbe to change it)"
        );
        let status = elbe.status().await;
        assert_eq!(status["config"]["generation"], 1);
        assert_eq!(status["config"]["last_reload_error"], error.to_string());
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// Instances removed from the file drain as deregistration does (connection draining on: InService /
/// "Instance deregistration currently in progress." while its request finishes, then gone); health checks,
/// policies and rules change in place.
#[tokio::test]
async fn instances_health_checks_policies_and_rules_change_in_place() {
    bounded(Duration::from_secs(60), async {
        let slow = Backend::start(Behaviour::Slow(Duration::from_millis(1500))).await;
        let fast = Backend::start(Behaviour::Echo).await;
        let mut web = Lb::new("web", "127.0.0.1").instance("i-slow", &slow);
        web.extra = "connection_draining = { enabled = true, timeout = \"10s\" }\n".into();
        let elbe = Reloading::start(&Setup::new(vec![web.clone()])).await;
        let node = elbe.listeners("web")[0];
        let in_flight = tokio::spawn(try_get(node, "/long"));
        wait_until("the request reached i-slow", || async { slow.requests() == 1 }).await;

        // i-slow removed (draining), i-fast added, a rule and a sticky policy.
        web.instances = vec![("i-fast".into(), "zone-a".into(), fast.address)];
        web.listeners = vec![HTTP.replace("instance_port = 80\n", "instance_port = 80\npolicy_names = [\"sticky\"]\n")];
        web.tables = "[[load_balancer.policy]]\nname = \"sticky\"\ntype = \"LBCookieStickinessPolicyType\"\ncookie_expiration_period = \"60s\"\n\n\
                      [[load_balancer.rule]]\nload_balancer_port = 0\npriority = 1\npath_pattern = [\"/fixed\"]\n\
                      action = { type = \"fixed_response\", status_code = 418, content_type = \"text/plain\", message_body = \"from the rule\" }\n".into();
        elbe.reload(&Setup::new(vec![web.clone()])).await.expect("reload");
        wait_for_health(&elbe.elbe, "i-slow", "InService", "Instance deregistration currently in progress.").await;
        wait_for_health(&elbe.elbe, "i-fast", "InService", "N/A").await;
        let (code, _) = in_flight.await.unwrap().expect("the draining request finishes");
        assert_eq!(code, 200);
        wait_until("i-slow gone once drained", || async {
            instance_ids(&elbe.status().await, "web") == [("i-fast".into(), "InService".into())]
        })
        .await;
        let (code, body) = try_get(node, "/fixed").await.unwrap();
        assert_eq!((code, &body[..]), (418, &b"from the rule"[..]));
        let reply = get(node, "/sticky").await;
        assert_eq!(reply.status, 200);
        let cookie = reply.headers["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with("AWSELB=") && cookie.ends_with(";PATH=/;MAX-AGE=60"), "{cookie}");
        assert_eq!(slow.requests(), 1, "the draining instance got no new request");

        // A health check whose target nothing answers: i-fast goes OutOfService.
        web.health_check = CHECK.replace("TCP:80", "TCP:9");
        elbe.reload(&Setup::new(vec![web])).await.expect("reload");
        wait_for_health(&elbe.elbe, "i-fast", "OutOfService", "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.").await;
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// SIGHUP to the `elbe` binary applies an added listener: `/status` shows it, and it serves.
#[test]
fn sighup_adds_a_listener_to_the_running_binary() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backend = runtime.block_on(Backend::start(Behaviour::Echo));
    let dir = process::TempDir::new("reload-sighup");
    let path = dir.path("elbe.toml");
    let mut web = Lb::new("web", "127.0.0.1").instance("i-a", &backend);
    std::fs::write(&path, Setup::new(vec![web.clone()]).toml()).unwrap();
    let mut elbe = process::Running::start(&path, &[]);
    elbe.wait_for_state("i-a", "InService");
    web.listeners.push(HTTP.into());
    std::fs::write(&path, Setup::new(vec![web]).toml()).unwrap();
    elbe.signal(nix::sys::signal::Signal::SIGHUP);
    // Polled every 20 ms, 500 times at most (10 s): this test drives a child process from a plain thread.
    let mut polls = 0;
    let added = loop {
        let status = elbe.status();
        let addresses = listener_addresses(&status, "web");
        if status["config"]["generation"] == 2 && addresses.len() == 2 {
            break addresses[1].parse::<SocketAddr>().unwrap();
        }
        polls += 1;
        assert!(polls < 500, "no second listener within 10 s: {status}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (code, body) = process::http_get(added, "/added");
    assert_eq!(code, 200, "{body}");
    elbe.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(elbe.wait().success());
}

// ---------------------------------------------------------------------------------------------------------------
// Under load
// ---------------------------------------------------------------------------------------------------------------

/// What one client of the loop saw: requests answered 200, and every other outcome.
#[derive(Default)]
struct Tally {
    ok: usize,
    failures: Vec<String>,
}

/// A client that sends requests until `stop`, on one keep-alive connection (reopened only if elbe closed it,
/// which counts as a failure) or on a fresh connection each time. `sent` counts every request of every client.
async fn client(
    address: SocketAddr,
    keep: bool,
    sent: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender = if keep {
        Some(keep_alive(address).await)
    } else {
        None
    };
    while !stop.load(Ordering::Relaxed) {
        let n = sent.fetch_add(1, Ordering::Relaxed);
        let path = format!("/r{n}");
        let result = match &mut sender {
            Some(sender) => send_on(sender, &path).await,
            None => try_get(address, &path).await.map(|(code, _)| code),
        };
        match result {
            Ok(200) => tally.ok += 1,
            other => {
                tally.failures.push(format!("{path}: {other:?}"));
                if keep {
                    sender = Some(keep_alive(address).await);
                }
            }
        }
    }
    tally
}

/// The test: four clients (two keep-alive, two not) send thousands of requests to the listener that stays
/// while the file is edited and reloaded ten times (instances added, removed with draining, the health check
/// changed, a listener added and one removed). Not one request fails, and each change shows in `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_fail_no_request() {
    bounded(Duration::from_secs(120), async {
        let backends = [
            Backend::start(Behaviour::Slow(Duration::from_millis(5))).await,
            Backend::start(Behaviour::Slow(Duration::from_millis(5))).await,
            Backend::start(Behaviour::Slow(Duration::from_millis(5))).await,
        ];
        let mut web = Lb::new("web", "127.0.0.1").instance("i-0", &backends[0]);
        web.extra = "connection_draining = { enabled = true, timeout = \"5s\" }\n".into();
        web.listeners.push(HTTP.into());
        let elbe = Reloading::start(&Setup::new(vec![web.clone()])).await;
        let stays = elbe.listeners("web")[0];

        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = [true, true, false, false]
            .into_iter()
            .map(|keep| tokio::spawn(client(stays, keep, sent.clone(), stop.clone())))
            .collect();

        let instances = |status: &serde_json::Value| instance_ids(status, "web");
        let in_service = |ids: &[&str]| -> Vec<(String, String)> {
            ids.iter()
                .map(|id| (id.to_string(), "InService".to_string()))
                .collect()
        };
        let mut generation = 1;
        macro_rules! reload {
            ($what:expr, $check:expr) => {{
                // Each reload lands in the middle of the load: 300 more requests first.
                let from = sent.load(Ordering::Relaxed);
                wait_until("300 requests before the next reload", || async {
                    sent.load(Ordering::Relaxed) >= from + 300
                })
                .await;
                elbe.reload(&Setup::new(vec![web.clone()]))
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", $what));
                generation += 1;
                let expected = generation;
                wait_until($what, || async {
                    let status = elbe.status().await;
                    status["config"]["generation"] == expected && ($check)(&status)
                })
                .await;
            }};
        }

        // 1. An instance added.
        web.instances
            .push(("i-1".into(), "zone-a".into(), backends[1].address));
        reload!("i-1 added", |s: &serde_json::Value| instances(s)
            == in_service(&["i-0", "i-1"]));
        // 2. The health check changed (another interval and thresholds).
        web.health_check = CHECK
            .replace("interval = \"100ms\"", "interval = \"150ms\"")
            .replace("healthy_threshold = 2", "healthy_threshold = 3");
        reload!("health check changed", |s: &serde_json::Value| instances(s)
            == in_service(&["i-0", "i-1"]));
        // 3. A listener removed (the second).
        let removed = elbe.listeners("web")[1];
        web.listeners.pop();
        reload!(
            "listener removed",
            |s: &serde_json::Value| listener_addresses(s, "web") == [stays.to_string()]
        );
        wait_until("the removed listener refuses", || refused(removed)).await;
        // 4. A listener added.
        web.listeners.push(HTTP.into());
        reload!(
            "listener added",
            |s: &serde_json::Value| listener_addresses(s, "web").len() == 2
        );
        let added = elbe.listeners("web")[1];
        assert_eq!(try_get(added, "/added").await.unwrap().0, 200);
        // 5. i-0 removed, with draining.
        web.instances.remove(0);
        reload!("i-0 removed", |s: &serde_json::Value| instances(s)
            == in_service(&["i-1"]));
        // 6. i-2 added.
        web.instances
            .push(("i-2".into(), "zone-a".into(), backends[2].address));
        reload!("i-2 added", |s: &serde_json::Value| instances(s)
            == in_service(&["i-1", "i-2"]));
        // 7. i-1 removed, with draining.
        web.instances.remove(0);
        reload!("i-1 removed", |s: &serde_json::Value| instances(s)
            == in_service(&["i-2"]));
        // 8. The health check changed back.
        web.health_check = CHECK.into();
        reload!(
            "health check changed back",
            |s: &serde_json::Value| instances(s) == in_service(&["i-2"])
        );
        // 9. i-0 back.
        web.instances
            .push(("i-0".into(), "zone-a".into(), backends[0].address));
        reload!("i-0 back", |s: &serde_json::Value| instances(s)
            == in_service(&["i-2", "i-0"]));
        // 10. An attribute: a new idle timeout, and cross-zone load balancing off.
        web.extra
            .push_str("idle_timeout = \"45s\"\ncross_zone_load_balancing = false\n");
        reload!("attributes changed", |s: &serde_json::Value| instances(s)
            == in_service(&["i-2", "i-0"]));

        // And 300 more after the last one.
        let during = sent.load(Ordering::Relaxed);
        wait_until("300 requests after the last reload", || async {
            sent.load(Ordering::Relaxed) >= during + 300
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut failures = Vec::new();
        for client in clients {
            let tally = client.await.unwrap();
            ok += tally.ok;
            failures.extend(tally.failures);
        }
        eprintln!(
            "{ok} requests answered 200 across ten reloads ({during} sent before the last), {} failed",
            failures.len()
        );
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        assert!(ok >= 3300, "{ok} requests");
        assert_eq!(elbe.listeners("web")[0], stays, "never rebound");
        let served: Vec<usize> = backends.iter().map(Backend::requests).collect();
        assert!(
            served.iter().all(|&n| n > 0),
            "every instance served: {served:?}"
        );
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}

/// Client connections open now (`elbe_client_connections`, summed over the nodes).
fn client_connections(elbe: &Elbe) -> f64 {
    metric_sum(&elbe.server().metrics().encode(), "elbe_client_connections")
}

/// A connection the drain's deadline cuts (a removed listener's, its request still waiting for the instance after
/// `shutdown_grace`) leaves `elbe_client_connections`: the gauge used to keep every cut connection.
#[tokio::test]
async fn a_connection_cut_by_the_drain_deadline_is_no_longer_counted_open() {
    bounded(Duration::from_secs(60), async {
        let backend = Backend::start(Behaviour::Slow(Duration::from_secs(30))).await;
        let mut web = Lb::new("web", "127.0.0.1").instance("i-a", &backend);
        web.listeners.push(HTTP.into());
        let elbe = Reloading::start(&Setup::new(vec![web.clone()])).await;
        let [_, removed] = elbe.listeners("web")[..] else {
            panic!("two listeners");
        };
        let in_flight = tokio::spawn(try_get(removed, "/hangs"));
        wait_until("the request reached the instance", || async {
            backend.requests() == 1
        })
        .await;
        assert_eq!(client_connections(&elbe.elbe), 1.0);

        web.listeners.pop();
        elbe.reload(&Setup::new(vec![web])).await.expect("reload");
        // The cut comes shutdown_grace (5 s) after the reload; the request ends without its answer.
        let cut = tokio::time::timeout(Duration::from_secs(20), in_flight)
            .await
            .expect("cut within the grace")
            .unwrap();
        assert!(!matches!(cut, Ok((200, _))), "{cut:?}");
        wait_until("the cut connection is no longer counted", || async {
            client_connections(&elbe.elbe) == 0.0
        })
        .await;
        assert!(elbe.elbe.shutdown().await);
    })
    .await;
}
