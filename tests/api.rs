//! The ELB API driven by the real AWS CLI (`aws elb … --endpoint-url http://<admin>/`), against elbe on port 0
//! with a real instance behind it: describe, register by catalogue id, the CLI's own waiters, traffic through the
//! listener, deregister; ELB's error codes for wrong calls; SigV4 right, wrong secret, unknown key, expired.
//!
//! Needs the AWS CLI (`pip install awscli`; `AWS_CLI` may name the binary): without it these tests fail saying so.
mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::aws::{aws_with, Cli};
use common::*;
use http::Request;
use http_body_util::Full;

const LIMIT: Duration = Duration::from_secs(180);
const KEY: &str = "AKIDELBETEST";
const SECRET: &str = "elbe-test-secret";

/// elbe with API keys, an `[[instance]]` catalogue entry `i-cat` for `backend`, and load balancer "web" with no
/// instance registered.
async fn elbe_with_catalogue(backend: &Backend) -> Elbe {
    let mut builder = ConfigBuilder::new();
    builder.top = format!(
        "[api]\nregion = \"local-1\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n\n\
         [[instance]]\nid = \"i-cat\"\nzone = \"zone-a\"\naddress = \"{}\"\n\n",
        backend.address
    );
    builder.start().await
}

async fn aws(elbe: &Elbe, args: &[&str]) -> Cli {
    aws_with(elbe, KEY, SECRET, args).await
}

/// `POST /` with `form`, signed by AWS's own signer (`aws-sigv4`) with `secret` as of `time`.
async fn signed_post(elbe: &Elbe, form: &str, secret: &str, time: SystemTime) -> Reply {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(KEY, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("local-1")
        .name("elasticloadbalancing")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = elbe.admin().to_string();
    let uri = format!("http://{host}/");
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = [("host", host.as_str()), ("content-type", content_type)];
    let signable = SignableRequest::new(
        "POST",
        &uri,
        headers.iter().copied(),
        SignableBody::Bytes(form.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = Request::post("/")
        .header("host", &host)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    instructions.apply_to_request_http1x(&mut request);
    self::request(elbe.admin(), request).await
}

/// The `<Code>` of an error document.
fn xml_code(reply: &Reply) -> String {
    let body = String::from_utf8_lossy(&reply.body);
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_owned())
        .unwrap_or_else(|| panic!("no <Code> in: {body}"))
}

#[tokio::test]
async fn the_cli_registers_an_instance_waits_for_it_and_traffic_reaches_it() {
    bounded(LIMIT, async {
        let backend = Backend::start(Behaviour::Echo).await;
        let elbe = elbe_with_catalogue(&backend).await;

        let described = aws(&elbe, &["describe-load-balancers"]).await.json();
        let lb = &described["LoadBalancerDescriptions"][0];
        assert_eq!(lb["LoadBalancerName"], "web");
        assert_eq!(lb["Scheme"], "internet-facing");
        assert_eq!(lb["AvailabilityZones"], serde_json::json!(["zone-a"]));
        assert_eq!(lb["Instances"], serde_json::json!([]));
        assert_eq!(lb["HealthCheck"]["Target"], "TCP:80");
        assert_eq!(lb["SourceSecurityGroup"]["GroupName"], "amazon-elb-sg");
        let listener = &lb["ListenerDescriptions"][0]["Listener"];
        assert_eq!(listener["Protocol"], "HTTP");
        // The listener is on port 0 in the file: the description gives the port it bound.
        assert_eq!(listener["LoadBalancerPort"], elbe.node("zone-a").port());
        assert!(lb["DNSName"].as_str().unwrap().starts_with("web-"), "{lb}");
        assert!(described.get("NextMarker").is_none(), "{described}");

        let registered = aws(
            &elbe,
            &["register-instances-with-load-balancer", "--load-balancer-name", "web", "--instances", "i-cat"],
        )
        .await
        .json();
        assert_eq!(registered["Instances"], serde_json::json!([{"InstanceId": "i-cat"}]));

        let waited = aws(
            &elbe,
            &["wait", "instance-in-service", "--load-balancer-name", "web", "--instances", "i-cat"],
        )
        .await;
        assert!(waited.success, "the waiter failed: {}", waited.stderr);
        let health = aws(&elbe, &["describe-instance-health", "--load-balancer-name", "web"]).await.json();
        assert_eq!(
            health["InstanceStates"],
            serde_json::json!([{"InstanceId": "i-cat", "State": "InService", "ReasonCode": "N/A", "Description": "N/A"}])
        );

        let reply = get(elbe.node("zone-a"), "/through-the-api").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["uri"], "/through-the-api");
        assert_eq!(reply.backend_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
        assert!(backend.requests() >= 1);

        let left = aws(
            &elbe,
            &["deregister-instances-from-load-balancer", "--load-balancer-name", "web", "--instances", "i-cat"],
        )
        .await
        .json();
        assert_eq!(left["Instances"], serde_json::json!([]));
        let waited = aws(
            &elbe,
            &["wait", "instance-deregistered", "--load-balancer-name", "web", "--instances", "i-cat"],
        )
        .await;
        assert!(waited.success, "the waiter failed: {}", waited.stderr);
        let health = aws(
            &elbe,
            &["describe-instance-health", "--load-balancer-name", "web", "--instances", "i-cat"],
        )
        .await
        .json();
        assert_eq!(health["InstanceStates"][0]["State"], "OutOfService");
        assert_eq!(
            health["InstanceStates"][0]["Description"],
            "Instance is not currently registered with the LoadBalancer."
        );
        let reply = get(elbe.node("zone-a"), "/after").await;
        assert_eq!(reply.status, 503, "no instance is registered any more");

        let attributes = aws(&elbe, &["describe-load-balancer-attributes", "--load-balancer-name", "web"])
            .await
            .json();
        let attributes = &attributes["LoadBalancerAttributes"];
        assert_eq!(attributes["ConnectionSettings"]["IdleTimeout"], 60);
        assert_eq!(attributes["CrossZoneLoadBalancing"]["Enabled"], false);
        assert_eq!(attributes["ConnectionDraining"]["Timeout"], 300);
        assert!(elbe.shutdown().await);
    })
    .await;
}

#[tokio::test]
async fn wrong_calls_get_elbs_error_codes() {
    bounded(LIMIT, async {
        let backend = Backend::start(Behaviour::Echo).await;
        let elbe = elbe_with_catalogue(&backend).await;
        let cases: &[(&[&str], &str)] = &[
            (
                &["describe-load-balancers", "--load-balancer-names", "nope"],
                "LoadBalancerNotFound",
            ),
            (
                &["describe-instance-health", "--load-balancer-name", "nope"],
                "LoadBalancerNotFound",
            ),
            (
                &[
                    "register-instances-with-load-balancer",
                    "--load-balancer-name",
                    "web",
                    "--instances",
                    "i-nowhere",
                ],
                "InvalidInstance",
            ),
            (
                &[
                    "deregister-instances-from-load-balancer",
                    "--load-balancer-name",
                    "web",
                    "--instances",
                    "i-cat",
                ],
                "InvalidInstance",
            ),
            (
                &[
                    "describe-instance-health",
                    "--load-balancer-name",
                    "web",
                    "--instances",
                    "i-nowhere",
                ],
                "InvalidInstance",
            ),
            (
                &[
                    "create-load-balancer",
                    "--load-balancer-name",
                    "new",
                    "--listeners",
                    "Protocol=HTTP,LoadBalancerPort=80,InstancePort=80",
                    "--availability-zones",
                    "zone-a",
                ],
                "ValidationError",
            ),
        ];
        for (args, code) in cases {
            let cli = aws(&elbe, args).await;
            assert_eq!(cli.error_code(), *code, "aws elb {args:?}: {}", cli.stderr);
        }

        // What the CLI's own validation never sends: signed by hand instead.
        let now = SystemTime::now();
        let reply = signed_post(
            &elbe,
            "Action=DescribeInstanceHealth&Version=2012-06-01",
            SECRET,
            now,
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (400, "MissingParameter".into())
        );
        let reply = signed_post(&elbe, "Action=LaunchRocket&Version=2012-06-01", SECRET, now).await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (400, "InvalidAction".into())
        );
        let reply = signed_post(
            &elbe,
            "Action=DescribeLoadBalancers&Version=2012-06-01&Colour=red",
            SECRET,
            now,
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (400, "ValidationError".into())
        );
        let reply = signed_post(&elbe, "Version=2012-06-01", SECRET, now).await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (400, "MissingAction".into())
        );
        assert_eq!(reply.headers["content-type"], "text/xml");
    })
    .await;
}

#[tokio::test]
async fn signatures_are_checked_against_the_configured_key() {
    bounded(LIMIT, async {
        let backend = Backend::start(Behaviour::Echo).await;
        let elbe = elbe_with_catalogue(&backend).await;
        let right = aws(&elbe, &["describe-load-balancers"]).await;
        assert!(right.success, "{}", right.stderr);
        let wrong_secret =
            aws_with(&elbe, KEY, "not-the-secret", &["describe-load-balancers"]).await;
        assert_eq!(wrong_secret.error_code(), "SignatureDoesNotMatch");
        let unknown_key =
            aws_with(&elbe, "AKIDUNKNOWN", SECRET, &["describe-load-balancers"]).await;
        assert_eq!(unknown_key.error_code(), "InvalidClientTokenId");

        let form = "Action=DescribeLoadBalancers&Version=2012-06-01";
        let now = SystemTime::now();
        let reply = signed_post(&elbe, form, SECRET, now).await;
        assert_eq!(reply.status, 200);
        let reply = signed_post(&elbe, form, SECRET, now - Duration::from_secs(20 * 60)).await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (400, "RequestExpired".into())
        );
        let reply = signed_post(&elbe, form, "not-the-secret", now).await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (403, "SignatureDoesNotMatch".into())
        );

        let unsigned = Request::post("/")
            .header("host", "admin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .unwrap();
        let reply = request(elbe.admin(), unsigned).await;
        assert_eq!(
            (reply.status.as_u16(), xml_code(&reply)),
            (403, "MissingAuthenticationToken".into())
        );
    })
    .await;
}

/// The catalogue and the keys are the admin listener's, fixed at start: a reload that changes them is refused
/// by name rather than half-applied.
#[tokio::test]
async fn a_reload_that_changes_the_catalogue_or_the_keys_is_refused() {
    bounded(LIMIT, async {
        let backend = Backend::start(Behaviour::Echo).await;
        let mut builder = ConfigBuilder::new();
        builder.top = format!(
            "[api]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n\n\
             [[instance]]\nid = \"i-cat\"\nzone = \"zone-a\"\naddress = \"{}\"\n\n",
            backend.address
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elbe.toml");
        std::fs::write(&path, builder.toml()).unwrap();
        let server = elbe::server::start(elbe::config::load(&path).unwrap())
            .await
            .unwrap();
        let elbe = Elbe {
            server: Some(server),
        };
        assert!(
            elbe.server().reload_from(&path).await.is_ok(),
            "the same file reloads"
        );

        std::fs::write(&path, builder.toml().replace("i-cat", "i-other")).unwrap();
        let error = elbe.server().reload_from(&path).await.unwrap_err();
        assert!(
            error.to_string().starts_with("[[instance]] changed"),
            "{error}"
        );
        std::fs::write(&path, builder.toml().replace(SECRET, "another")).unwrap();
        let error = elbe.server().reload_from(&path).await.unwrap_err();
        assert!(error.to_string().starts_with("[api] changed"), "{error}");
        assert!(elbe.shutdown().await);
    })
    .await;
}
