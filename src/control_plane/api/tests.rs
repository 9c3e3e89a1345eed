//! The API answered in memory: requests built by hand, answered by [`Api::answer`] against a real `Control`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{Api, ApiError};
use crate::config;
use crate::control_plane::control::Control;
use crate::control_plane::discovery::Discovery;
use crate::observability::metrics::Metrics;

const CONFIG: &str = r#"
[[instance]]
id = "i-cat"
zone = "zone-a"
address = "127.0.0.22:8000"

[[load_balancer]]
name = "web"
connection_draining = { enabled = false, timeout = "300s" }
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000
[[load_balancer.instance]]
id = "i-file"
zone = "zone-a"
address = "127.0.0.21"

[[load_balancer]]
name = "api"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.12"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000
"#;

fn setup(top: &str) -> (Api, Arc<Control>) {
    let mut config =
        config::parse(&format!("{top}{CONFIG}"), std::path::Path::new("<test>")).unwrap();
    // Asks no name server (nothing here resolves a name).
    config.discovery.name_servers = vec!["127.0.0.1:9".parse().unwrap()];
    let discovery = Arc::new(Discovery::new(&config.discovery).unwrap());
    let control = Arc::new(Control::new(
        &config,
        &HashMap::new(),
        Arc::new(Metrics::new()),
        discovery,
    ));
    let no_server: std::sync::Weak<dyn super::Apply> = std::sync::Weak::<NoServer>::new();
    (Api::new(&config, no_server), control)
}

/// The unit tests run the API without a server: changes are not theirs to test (tests/api_lifecycle.rs is).
struct NoServer;

impl super::Apply for NoServer {
    fn apply(
        self: Arc<Self>,
        _: super::Plan,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send>> {
        Box::pin(async { Err(ApiError::service_unavailable("no server")) })
    }
}

async fn post(api: &Api, control: &Arc<Control>, form: &str) -> (StatusCode, String) {
    let request = Request::post("/")
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    let response = api.answer(control, request).await;
    assert_eq!(response.headers()["content-type"], "text/xml");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn between<'a>(body: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    body.split(open)
        .skip(1)
        .filter_map(|rest| rest.split(close).next())
        .collect()
}

#[tokio::test]
async fn describe_load_balancers_pages_and_filters() {
    let (api, control) = setup("");
    let (status, body) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancers&Version=2012-06-01",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("<DescribeLoadBalancersResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\">"));
    assert_eq!(between(&body, "<LoadBalancerName>", "<"), ["web", "api"]);
    assert!(!body.contains("NextMarker"), "{body}");
    for member in [
        "<DNSName>web-",
        "<Listener><Protocol>HTTP</Protocol><LoadBalancerPort>8080</LoadBalancerPort><InstanceProtocol>HTTP</InstanceProtocol><InstancePort>8000</InstancePort></Listener><PolicyNames/>",
        "<Instances><member><InstanceId>i-file</InstanceId></member></Instances>",
        "<HealthCheck><Target>TCP:8000</Target><Interval>30</Interval><Timeout>5</Timeout><UnhealthyThreshold>2</UnhealthyThreshold><HealthyThreshold>10</HealthyThreshold></HealthCheck>",
        "<AvailabilityZones><member>zone-a</member></AvailabilityZones>",
        "<SourceSecurityGroup><OwnerAlias>amazon-elb</OwnerAlias><GroupName>amazon-elb-sg</GroupName></SourceSecurityGroup>",
        "<Scheme>internet-facing</Scheme>",
        "<Policies><AppCookieStickinessPolicies/><LBCookieStickinessPolicies/><OtherPolicies/></Policies>",
        "<RequestId>",
    ] {
        assert!(body.contains(member), "{member} missing from {body}");
    }

    let (_, first) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancers&Version=2012-06-01&PageSize=1",
    )
    .await;
    assert_eq!(between(&first, "<LoadBalancerName>", "<"), ["web"]);
    assert_eq!(between(&first, "<NextMarker>", "<"), ["api"]);
    let (_, last) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancers&Version=2012-06-01&PageSize=1&Marker=api",
    )
    .await;
    assert_eq!(between(&last, "<LoadBalancerName>", "<"), ["api"]);
    assert!(!last.contains("NextMarker"), "{last}");

    let (_, one) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancers&Version=2012-06-01&LoadBalancerNames.member.1=api",
    )
    .await;
    assert_eq!(between(&one, "<LoadBalancerName>", "<"), ["api"]);
    let (status, missing) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancers&Version=2012-06-01&LoadBalancerNames.member.1=nope",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        missing.contains("<Code>LoadBalancerNotFound</Code>"),
        "{missing}"
    );
    assert!(
        missing.contains("<Message>Cannot find Load Balancer nope</Message>"),
        "{missing}"
    );
}

#[tokio::test]
async fn registration_by_catalogue_id_and_its_health() {
    let (api, control) = setup("");
    let register = "Action=RegisterInstancesWithLoadBalancer&Version=2012-06-01&LoadBalancerName=web&Instances.member.1.InstanceId=i-cat";
    let (status, body) = post(&api, &control, register).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(between(&body, "<InstanceId>", "<"), ["i-file", "i-cat"]);

    let (_, health) = post(
        &api,
        &control,
        "Action=DescribeInstanceHealth&Version=2012-06-01&LoadBalancerName=web",
    )
    .await;
    assert!(health.contains("<member><InstanceId>i-cat</InstanceId><State>OutOfService</State><ReasonCode>ELB</ReasonCode><Description>Instance registration is still in progress.</Description></member>"), "{health}");

    let (status, body) = post(&api, &control, &register.replace("i-cat", "i-nowhere")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains(
            "<Code>InvalidInstance</Code><Message>Could not find EC2 instance i-nowhere.</Message>"
        ),
        "{body}"
    );

    let deregister = "Action=DeregisterInstancesFromLoadBalancer&Version=2012-06-01&LoadBalancerName=web&Instances.member.1.InstanceId=i-cat";
    let (status, body) = post(&api, &control, deregister).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(between(&body, "<InstanceId>", "<"), ["i-file"]);
    // Not registered any more: deregistering again is InvalidInstance; asking for its health says so.
    let (status, body) = post(&api, &control, deregister).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("<Code>InvalidInstance</Code>"), "{body}");
    let (_, health) = post(
        &api,
        &control,
        "Action=DescribeInstanceHealth&Version=2012-06-01&LoadBalancerName=web&Instances.member.1.InstanceId=i-cat",
    )
    .await;
    assert!(health.contains("<State>OutOfService</State><ReasonCode>Instance</ReasonCode><Description>Instance is not currently registered with the LoadBalancer.</Description>"), "{health}");
    let (_, unknown) = post(
        &api,
        &control,
        "Action=DescribeInstanceHealth&Version=2012-06-01&LoadBalancerName=web&Instances.member.1.InstanceId=i-nowhere",
    )
    .await;
    assert!(
        unknown.contains("<Code>InvalidInstance</Code>"),
        "{unknown}"
    );
    let (_, no_lb) = post(
        &api,
        &control,
        "Action=DescribeInstanceHealth&Version=2012-06-01&LoadBalancerName=nope",
    )
    .await;
    assert!(
        no_lb
            .contains("<Message>There is no ACTIVE Load Balancer named &apos;nope&apos;</Message>"),
        "{no_lb}"
    );
}

#[tokio::test]
async fn attributes_come_from_the_file() {
    let (api, control) = setup("");
    let (status, body) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancerAttributes&Version=2012-06-01&LoadBalancerName=web",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(
        "<LoadBalancerAttributes><CrossZoneLoadBalancing><Enabled>false</Enabled></CrossZoneLoadBalancing>\
         <AccessLog><Enabled>false</Enabled></AccessLog>\
         <ConnectionDraining><Enabled>false</Enabled><Timeout>300</Timeout></ConnectionDraining>\
         <ConnectionSettings><IdleTimeout>60</IdleTimeout></ConnectionSettings></LoadBalancerAttributes>"
    ), "{body}");
}

#[tokio::test]
async fn a_get_with_the_parameters_in_the_query_is_a_call_too() {
    let (api, control) = setup("");
    let uri: http::Uri = "/?Action=DescribeLoadBalancers&Version=2012-06-01"
        .parse()
        .unwrap();
    assert!(Api::is_call(&http::Method::GET, &uri));
    assert!(!Api::is_call(&http::Method::GET, &"/".parse().unwrap()));
    assert!(Api::is_call(&http::Method::POST, &"/".parse().unwrap()));
    let request = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    let response = api.answer(&control, request).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_keys_an_unsigned_call_is_refused_and_oversized_bodies_too() {
    let (api, control) = setup("[api]\naccess_key_id = \"AKIDELBE\"\nsecret_access_key = \"s\"\n");
    let (status, body) = post(
        &api,
        &control,
        "Action=DescribeLoadBalancers&Version=2012-06-01",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("<Type>Sender</Type><Code>MissingAuthenticationToken</Code>"),
        "{body}"
    );
    assert!(body.contains("</Error><RequestId>"), "{body}");

    let (api, control) = setup("");
    let big = format!(
        "Action=DescribeLoadBalancers&Version=2012-06-01&Marker={}",
        "x".repeat(super::MAX_BODY)
    );
    let (status, body) = post(&api, &control, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}
