//! The status page: `GET /` on the admin listener, for people (`/status` stays the JSON for programs).
//!
//! The page shows what `/status` says (ELB-SPEC.md §2.2's DescribeInstanceHealth states, §4's DNS names, §10's
//! request and error counts and the surge queue) and redraws itself by polling `/status`. Its HTML, CSS and
//! JavaScript are compiled into the binary and served from their own paths, so the page fetches nothing from
//! elsewhere and a strict Content-Security-Policy (`default-src 'self'`, no inline script or style) holds. The
//! trade-off: polling every two seconds rather than server-sent events; one request per open page every two
//! seconds is nothing for the admin listener, and it needs no connection kept open across reloads.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;

const HTML: &str = include_str!("assets/status.html");
const CSS: &str = include_str!("assets/status.css");
const JS: &str = include_str!("assets/status.js");

/// Only this origin, for everything: no inline script or style, no frames, no plug-ins.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// One of the page's files, by its path on the admin listener (`/`, `/status.css`, `/status.js`).
pub(crate) fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "" => (HTML, "text/html; charset=utf-8"),
        "status.css" => (CSS, "text/css; charset=utf-8"),
        "status.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // Small and compiled in: revalidating costs nothing and a new binary's page shows at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_with_a_strict_policy() {
        for (path, kind) in [
            ("", "text/html"),
            ("status.css", "text/css"),
            ("status.js", "text/javascript"),
        ] {
            let response = asset(path).unwrap();
            let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
            assert!(header("content-type").starts_with(kind), "{path}");
            assert!(header("content-security-policy").starts_with("default-src 'self'"));
            assert_eq!(header("x-content-type-options"), "nosniff");
        }
        assert!(asset("other").is_none());
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_says_its_language() {
        assert!(HTML.contains(r#"<html lang="en">"#));
        assert!(HTML.contains(r#"<script src="/status.js""#));
        assert!(
            !HTML.contains("<script>"),
            "no inline script: the policy forbids it"
        );
        assert!(
            !HTML.contains("style="),
            "no inline style: the policy forbids it"
        );
        assert!(
            !HTML.contains("http://") && !HTML.contains("https://"),
            "nothing from elsewhere"
        );
        assert!(
            !JS.contains("innerHTML"),
            "server text is never parsed as HTML"
        );
    }
}
