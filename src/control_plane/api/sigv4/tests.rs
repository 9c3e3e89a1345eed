//! The verifier against AWS's published SigV4 test suite and against AWS's own signer (`aws-sigv4`).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::control_plane::api::timestamp::parse_amz_date;

/// The test suite's key, region and service: AWS's SigV4 test suite as the Rust SDK's signer ships it
/// (`aws-sigv4` 1.6.4, `aws-signing-test-suite/v4/<vector>/context.json`; the vectors below are that folder's
/// `header-signature.txt` and `query-signed-request.txt`).
const SUITE: Verifier<'static> = Verifier {
    access_key_id: "AKIDEXAMPLE",
    secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    region: "us-east-1",
    service: "service",
};

const SUITE_DATE: &str = "20150830T123600Z";

fn suite_now() -> SystemTime {
    parse_amz_date(SUITE_DATE).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// (vector, method, path, query, extra headers, body, signed headers, signature): `authz.txt` of each vector.
/// (name, method, path, query, headers beside host and x-amz-date, body, signed headers, signature).
type Vector = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static str,
);

const VECTORS: &[Vector] = &[
    (
        "get-vanilla",
        "GET",
        "/",
        "",
        &[],
        "",
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        "/",
        "Param2=value2&Param1=value1",
        &[],
        "",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "get-vanilla-query-unreserved",
        "GET",
        "/",
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        &[],
        "",
        "host;x-amz-date",
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    (
        "get-header-value-trim",
        "GET",
        "/",
        "",
        &[("my-header1", " value1"), ("my-header2", " \"a   b   c\"")],
        "",
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    (
        "post-vanilla",
        "POST",
        "/",
        "",
        &[],
        "",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "post-x-www-form-urlencoded",
        "POST",
        "/",
        "",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "13"),
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
        ],
        "Param1=value1",
        "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
        "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    ),
];

fn vector_request<'a>(
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a str,
) -> SignedRequest<'a> {
    SignedRequest {
        method,
        path,
        query,
        headers,
        authority: None,
        body: body.as_bytes(),
    }
}

#[test]
fn the_published_test_suite_vectors_verify() {
    for &(name, method, path, query, extra, body, signed, signature) in VECTORS {
        let mut pairs = vec![
            ("host", "example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE),
        ];
        pairs.extend_from_slice(extra);
        let auth = authorization(signed, signature);
        pairs.push(("authorization", &auth));
        let map = headers(&pairs);
        let request = vector_request(method, path, query, &map, body);
        assert!(SUITE.verify(&request, suite_now()).is_ok(), "{name}");

        // One changed byte anywhere the signature covers, and it no longer verifies.
        let tampered_body = format!("{body}x");
        let request = vector_request(method, path, query, &map, &tampered_body);
        let error = SUITE.verify(&request, suite_now()).unwrap_err();
        assert_eq!(error.code, "SignatureDoesNotMatch", "{name}");
        let request = vector_request(method, "/other", query, &map, body);
        assert_eq!(
            SUITE.verify(&request, suite_now()).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
    }
}

/// (vector, query string of `query-signed-request.txt`): the presigned form, signature in the query.
const QUERY_VECTORS: &[(&str, &str)] = &[
    (
        "get-vanilla",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
    ),
    (
        "get-vanilla-query-order-key-case",
        "Param2=value2&Param1=value1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5",
    ),
];

#[test]
fn the_published_presigned_vectors_verify_until_they_expire() {
    let map = headers(&[("host", "example.amazonaws.com")]);
    for &(name, query) in QUERY_VECTORS {
        let request = vector_request("GET", "/", query, &map, "");
        assert!(SUITE.verify(&request, suite_now()).is_ok(), "{name}");
        let within = suite_now() + Duration::from_secs(3600);
        assert!(SUITE.verify(&request, within).is_ok(), "{name}");
        let later = suite_now() + Duration::from_secs(3601);
        assert_eq!(
            SUITE.verify(&request, later).unwrap_err().code,
            "RequestExpired",
            "{name}"
        );
        let changed = query.replace("value1", "value9").replace(
            "X-Amz-SignedHeaders=host",
            "X-Amz-SignedHeaders=host&Extra=1",
        );
        let request = vector_request("GET", "/", &changed, &map, "");
        assert_eq!(
            SUITE.verify(&request, suite_now()).unwrap_err().code,
            "SignatureDoesNotMatch",
            "{name}"
        );
    }
}

#[test]
fn the_suites_canonical_request_is_rebuilt_exactly() {
    // get-vanilla-query-order-key-case's `creq.txt`.
    let map = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", SUITE_DATE),
    ]);
    let request = vector_request("GET", "/", "Param2=value2&Param1=value1", &map, "");
    assert_eq!(
        canonical_request(&request, "host;x-amz-date", &hex_sha256(b"")),
        "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
         host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

fn suite_signed(extra: &[(&str, &str)]) -> HeaderMap {
    let auth = authorization(
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    );
    let mut pairs = vec![
        ("host", "example.amazonaws.com"),
        ("x-amz-date", SUITE_DATE),
        ("authorization", auth.as_str()),
    ];
    pairs.extend_from_slice(extra);
    headers(&pairs)
}

#[test]
fn each_refusal_has_its_code() {
    let map = suite_signed(&[]);
    let request = vector_request("GET", "/", "", &map, "");
    let code =
        |verifier: &Verifier<'_>, now: SystemTime| verifier.verify(&request, now).unwrap_err().code;

    let wrong_secret = Verifier {
        secret_access_key: "another",
        ..SUITE
    };
    assert_eq!(code(&wrong_secret, suite_now()), "SignatureDoesNotMatch");
    let other_key = Verifier {
        access_key_id: "AKIDOTHER",
        ..SUITE
    };
    assert_eq!(code(&other_key, suite_now()), "InvalidClientTokenId");
    let other_region = Verifier {
        region: "local-1",
        ..SUITE
    };
    assert_eq!(code(&other_region, suite_now()), "SignatureDoesNotMatch");
    let other_service = Verifier {
        service: SERVICE,
        ..SUITE
    };
    assert_eq!(code(&other_service, suite_now()), "SignatureDoesNotMatch");

    // 15 minutes either way is fine; a second more is not.
    assert!(SUITE.verify(&request, suite_now() + MAX_SKEW).is_ok());
    assert!(SUITE.verify(&request, suite_now() - MAX_SKEW).is_ok());
    assert_eq!(
        code(&SUITE, suite_now() + MAX_SKEW + Duration::from_secs(1)),
        "RequestExpired"
    );
    assert_eq!(
        code(&SUITE, suite_now() - MAX_SKEW - Duration::from_secs(1)),
        "RequestExpired"
    );

    let unsigned = HeaderMap::new();
    let request = vector_request("GET", "/", "", &unsigned, "");
    assert_eq!(
        SUITE.verify(&request, suite_now()).unwrap_err().code,
        "MissingAuthenticationToken"
    );
    for bad in [
        "AWS AKIDEXAMPLE:sig",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, SignedHeaders=host, Signature=00",
    ] {
        let map = headers(&[("host", "h"), ("x-amz-date", SUITE_DATE), ("authorization", bad)]);
        let request = vector_request("GET", "/", "", &map, "");
        assert_eq!(SUITE.verify(&request, suite_now()).unwrap_err().code, "IncompleteSignature", "{bad}");
    }
}

#[test]
fn a_claimed_payload_hash_must_be_the_bodys() {
    let map = suite_signed(&[("x-amz-content-sha256", "00")]);
    let request = vector_request("GET", "/", "", &map, "");
    assert_eq!(
        SUITE.verify(&request, suite_now()).unwrap_err().code,
        "SignatureDoesNotMatch"
    );
}

// --- signed by AWS's own signer ---

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;

/// Signs a request as the AWS SDKs do, at `time`, with `secret`; returns (path and query, headers).
fn aws_signed(
    method: &str,
    uri: &str,
    headers_in: &[(&str, &str)],
    body: &[u8],
    secret: &str,
    time: SystemTime,
    location: SignatureLocation,
) -> (http::Uri, HeaderMap) {
    let identity = Credentials::new("AKIDELBE", secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = location;
    settings.expires_in = Some(Duration::from_secs(300));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("local-1")
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers_in.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers_in {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    (request.uri().clone(), request.headers().clone())
}

const ELBE: Verifier<'static> = Verifier {
    access_key_id: "AKIDELBE",
    secret_access_key: "elbe-secret",
    region: "local-1",
    service: SERVICE,
};

#[test]
fn requests_signed_by_aws_sigv4_verify_in_the_header_and_in_the_query() {
    let body =
        b"Action=DescribeLoadBalancers&Version=2012-06-01&LoadBalancerNames.member.1=web%20x";
    let now = SystemTime::now();
    for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
        let (uri, headers) = aws_signed(
            "POST",
            "http://127.0.0.1:9900/?a=1&b=x%20y",
            &[
                ("host", "127.0.0.1:9900"),
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
            ],
            body,
            "elbe-secret",
            now,
            location,
        );
        let request = SignedRequest {
            method: "POST",
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &headers,
            authority: None,
            body,
        };
        assert!(
            ELBE.verify(&request, now).is_ok(),
            "{location:?}: {:?}",
            ELBE.verify(&request, now)
        );
        let changed = SignedRequest {
            body: b"Action=DeleteLoadBalancer",
            ..request
        };
        assert_eq!(
            ELBE.verify(&changed, now).unwrap_err().code,
            "SignatureDoesNotMatch",
            "{location:?}"
        );
    }
}

#[test]
fn a_raw_plus_in_the_query_is_the_space_the_action_reads() {
    let now = SystemTime::now();
    let (uri, headers) = aws_signed(
        "GET",
        "http://127.0.0.1:9900/?Action=DescribeTags&Version=2012-06-01&LoadBalancerNames.member.1=a%20b",
        &[("host", "127.0.0.1:9900")],
        b"",
        "elbe-secret",
        now,
        SignatureLocation::Headers,
    );
    let signed = uri.query().unwrap().to_owned();
    let verify = |query: &str| {
        let request = SignedRequest {
            method: "GET",
            path: "/",
            query,
            headers: &headers,
            authority: None,
            body: b"",
        };
        ELBE.verify(&request, now).map_err(|error| error.code)
    };
    assert_eq!(verify(&signed), Ok(()));
    // What a form encoder sends for the same value, and what the parameters decoder reads as a space.
    assert_eq!(verify(&signed.replace("a%20b", "a+b")), Ok(()));
    let params =
        super::super::query::Params::from_form(signed.replace("a%20b", "a+b").as_bytes()).unwrap();
    assert!(format!("{:?}", params.into_pairs()).contains("\"a b\""));
    // A literal plus is another value: not the one signed.
    assert_eq!(
        verify(&signed.replace("a%20b", "a%2Bb")),
        Err("SignatureDoesNotMatch")
    );
}

#[test]
fn aws_sigv4_with_a_wrong_secret_or_an_old_date_is_refused() {
    let now = SystemTime::now();
    let sign_with = |secret: &str, time: SystemTime| {
        aws_signed(
            "GET",
            "http://127.0.0.1:9900/?Action=DescribeLoadBalancers&Version=2012-06-01",
            &[("host", "127.0.0.1:9900")],
            b"",
            secret,
            time,
            SignatureLocation::Headers,
        )
    };
    let check = |(uri, headers): (http::Uri, HeaderMap)| {
        let request = SignedRequest {
            method: "GET",
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &headers,
            authority: None,
            body: b"",
        };
        ELBE.verify(&request, now).map_err(|e| e.code)
    };
    assert_eq!(check(sign_with("elbe-secret", now)), Ok(()));
    assert_eq!(check(sign_with("wrong", now)), Err("SignatureDoesNotMatch"));
    let old = now - Duration::from_secs(16 * 60);
    assert_eq!(check(sign_with("elbe-secret", old)), Err("RequestExpired"));
}
