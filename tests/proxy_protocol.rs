//! Proxy Protocol (ELB-SPEC §7) over real sockets: with a ProxyProtocolPolicyType on the instance port, every
//! connection to the instance starts with ELB's exact v1 line (TCP4, and TCP6 for an IPv6 client on ::1), on
//! TCP -> TCP and SSL -> TCP; and a listener with `accept_proxy_protocol = true` (elbe's extension) reads a v1 or
//! v2 header from its upstream, uses the client it names (in the line it sends on and in the access log), and
//! closes a connection whose header is missing or malformed.
mod common;
mod tcp_support;

use std::time::Duration;

use common::*;
use tcp_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PP_TABLES: &str = "[[load_balancer.policy]]\nname = \"pp\"\ntype = \"ProxyProtocolPolicyType\"\nproxy_protocol = true\n\n\
                         [[load_balancer.backend_server]]\ninstance_port = 80\npolicy_names = [\"pp\"]\n";

fn builder(listener_table: String, instance: &Instance) -> ConfigBuilder {
    let mut builder = ConfigBuilder::new();
    builder.listeners = vec![format!("{listener_table}\n{PP_TABLES}")];
    builder.instance(InstanceSpec {
        id: "i-1".into(),
        zone: "zone-a".into(),
        address: instance.address,
    })
}

#[tokio::test]
async fn the_instance_gets_elbs_exact_tcp4_line_before_the_first_byte() {
    let (instance, mut recorded) = Instance::recording().await;
    let elbe = builder(listener("TCP", "TCP", ""), &instance).start().await;
    let node = elbe.node("zone-a");
    let mut client = TcpStream::connect(node).await.unwrap();
    let local = client.local_addr().unwrap();
    client.write_all(b"payload").await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"ok");
    drop(client);
    let expected = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\npayload",
        local.port(),
        node.port()
    );
    assert_eq!(
        String::from_utf8(next_recorded(&mut recorded).await).unwrap(),
        expected
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn an_ipv6_client_gets_a_tcp6_line() {
    // This test needs IPv6 loopback: it fails, saying so, on a machine without ::1.
    let addresses = std::process::Command::new("ip")
        .args(["-6", "addr", "show", "dev", "lo"])
        .output()
        .expect("the ip command (iproute2) is installed");
    let text = String::from_utf8_lossy(&addresses.stdout);
    assert!(
        text.contains("::1/128"),
        "this test needs ::1 on lo; `ip -6 addr` shows:\n{text}"
    );

    let (instance, mut recorded) = Instance::recording().await;
    let elbe = builder(listener("TCP", "TCP", ""), &instance)
        .zones(&[("zone-a", "::1")])
        .start()
        .await;
    let node = elbe.node("zone-a");
    assert!(node.is_ipv6(), "{node}");
    let mut client = TcpStream::connect(node).await.unwrap();
    let local = client.local_addr().unwrap();
    client.write_all(b"six").await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"ok");
    drop(client);
    let expected = format!("PROXY TCP6 ::1 ::1 {} {}\r\nsix", local.port(), node.port());
    assert_eq!(
        String::from_utf8(next_recorded(&mut recorded).await).unwrap(),
        expected
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn ssl_to_tcp_sends_the_line_too() {
    let (instance, mut recorded) = Instance::recording().await;
    let elbe = builder(listener("SSL", "TCP", ""), &instance).start().await;
    let node = elbe.node("zone-a");
    // openssl s_client is the TLS client; its source port is not known here, so the line is matched by shape.
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &node.to_string(), "-quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed (apt-get install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"over tls").await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    assert_eq!(read_n(&mut stdout, 2).await, b"ok");
    // The instance may have answered the PROXY line alone: the client stays until the instance has it all.
    let seen = String::from_utf8(next_recorded(&mut recorded).await).unwrap();
    child.kill().await.unwrap();
    let line = seen
        .strip_suffix("over tls")
        .unwrap_or_else(|| panic!("{seen:?}"));
    let fields: Vec<&str> = line.trim_end_matches("\r\n").split(' ').collect();
    assert_eq!(
        &fields[..4],
        ["PROXY", "TCP4", "127.0.0.1", "127.0.0.1"],
        "{seen:?}"
    );
    assert!(fields[4].parse::<u16>().is_ok(), "{seen:?}");
    assert_eq!(fields[5], node.port().to_string(), "{seen:?}");
    assert!(line.ends_with("\r\n"));
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_trusted_upstreams_v1_header_names_the_client() {
    let (instance, mut recorded) = Instance::recording().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let elbe = builder(
        listener("TCP", "TCP", "accept_proxy_protocol = true\n"),
        &instance,
    )
    .lb(&format!(
        "access_log = {{ enabled = true, path = \"{}\" }}",
        path.display()
    ))
    .start()
    .await;
    let node = elbe.node("zone-a");
    let mut client = TcpStream::connect(node).await.unwrap();
    client
        .write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 4000 443\r\nhello")
        .await
        .unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"ok");
    drop(client);
    let expected = format!(
        "PROXY TCP4 203.0.113.7 127.0.0.1 4000 {}\r\nhello",
        node.port()
    );
    assert_eq!(
        String::from_utf8(next_recorded(&mut recorded).await).unwrap(),
        expected
    );
    assert!(elbe.shutdown().await);
    let log = std::fs::read_to_string(&path).unwrap();
    assert_eq!(log.split(' ').nth(2), Some("203.0.113.7:4000"), "{log}");
}

#[tokio::test]
async fn a_trusted_upstreams_v2_header_names_an_ipv6_client() {
    let (instance, mut recorded) = Instance::recording().await;
    let elbe = builder(
        listener("TCP", "TCP", "accept_proxy_protocol = true\n"),
        &instance,
    )
    .start()
    .await;
    let node = elbe.node("zone-a");
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    let source: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    header.extend_from_slice(&source.octets());
    header.extend_from_slice(&[0u8; 16]); // destination ::
    header.extend_from_slice(&5000u16.to_be_bytes());
    header.extend_from_slice(&443u16.to_be_bytes());
    let mut client = TcpStream::connect(node).await.unwrap();
    client.write_all(&header).await.unwrap();
    client.write_all(b"v2").await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"ok");
    drop(client);
    let expected = format!(
        "PROXY TCP6 2001:db8::7 ::ffff:127.0.0.1 5000 {}\r\nv2",
        node.port()
    );
    assert_eq!(
        String::from_utf8(next_recorded(&mut recorded).await).unwrap(),
        expected
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_missing_or_malformed_header_closes_the_connection() {
    let (instance, mut recorded) = Instance::recording().await;
    let elbe = builder(
        listener("TCP", "TCP", "accept_proxy_protocol = true\n"),
        &instance,
    )
    .start()
    .await;
    let node = elbe.node("zone-a");
    for opening in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"PROXY TCP4 not-an-address 10.0.0.1 4000 443\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c",
    ] {
        let mut client = TcpStream::connect(node).await.unwrap();
        client.write_all(opening).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(&mut client, &mut buf),
        )
        .await
        .expect("elbe closes the connection in time");
        // A close with the client's bytes unread may be a reset: either way no byte and no instance.
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // None of them reached the instance.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), recorded.recv())
            .await
            .is_err(),
        "a connection reached the instance"
    );
    assert!(elbe.shutdown().await);
}
