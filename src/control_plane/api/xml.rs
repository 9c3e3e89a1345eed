//! The XML ELB answers in (ELB-SPEC §13.2): `{Action}Response` in the 2012-06-01 namespace, its
//! `{Action}Result`, `ResponseMetadata/RequestId`, lists as `<member>`, and the error document.
//!
//! Rule: elements only, no attributes but the namespace; text is escaped (`& < > " '`); an empty list is the bare
//! `<Name/>` botocore reads as `[]`. Every response gets a fresh uuid-shaped `RequestId`.
//!
//! Trade-off: one small writer instead of `quick-xml`: the API only writes, never parses, XML; it writes nested
//! elements with text, which is the escaping function and a `String`. quick-xml would add a dependency to
//! do the same, and its writer would still need the document's shape spelled out here.

use std::fmt::Write as _;

use super::error::ApiError;

/// ELB's XML namespace (ELB-SPEC §13).
pub(crate) const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/";

/// An XML document being written, element by element.
#[derive(Default)]
pub(crate) struct Xml {
    out: String,
}

impl Xml {
    /// `<name>`, what `inner` writes, `</name>`; `<name/>` when it writes nothing.
    pub(crate) fn element(&mut self, name: &str, inner: impl FnOnce(&mut Xml)) {
        let start = self.out.len();
        let _ = write!(self.out, "<{name}>");
        let content = self.out.len();
        inner(self);
        if self.out.len() == content {
            self.out.truncate(start);
            let _ = write!(self.out, "<{name}/>");
        } else {
            let _ = write!(self.out, "</{name}>");
        }
    }

    /// `<name>text</name>`, the text escaped.
    pub(crate) fn text(&mut self, name: &str, text: impl std::fmt::Display) {
        let _ = write!(self.out, "<{name}>");
        escape_into(&mut self.out, &text.to_string());
        let _ = write!(self.out, "</{name}>");
    }

    /// A list: `<name><member>…</member>…</name>`, or `<name/>` when it is empty.
    pub(crate) fn list<T>(
        &mut self,
        name: &str,
        items: &[T],
        mut member: impl FnMut(&mut Xml, &T),
    ) {
        self.element(name, |xml| {
            for item in items {
                xml.element("member", |xml| member(xml, item));
            }
        });
    }

    /// A list of plain strings: `<name><member>text</member>…</name>`.
    pub(crate) fn strings(&mut self, name: &str, items: &[String]) {
        self.list(name, items, |xml, item| escape_into(&mut xml.out, item));
    }

    /// Appends what another writer wrote (an action's result, written before the envelope).
    pub(crate) fn append(&mut self, other: Xml) {
        self.out.push_str(&other.out);
    }

    fn into_string(self) -> String {
        self.out
    }
}

/// Appends `text` with XML's five special characters escaped, and the characters XML 1.0 does not allow at all
/// (control characters but tab and line ends, U+FFFE, U+FFFF) replaced by U+FFFD: an error message echoing a
/// caller's bytes must still be a document botocore can parse.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// A successful answer: `<{action}Response>` with the `<{action}Result>` `result` writes (`<{action}Result/>`
/// when it writes nothing) and the request id.
pub(crate) fn response(action: &str, request_id: &str, result: impl FnOnce(&mut Xml)) -> String {
    let mut xml = Xml::default();
    let _ = write!(xml.out, "<{action}Response xmlns=\"{NAMESPACE}\">");
    xml.element(&format!("{action}Result"), result);
    xml.element("ResponseMetadata", |xml| xml.text("RequestId", request_id));
    let _ = write!(xml.out, "</{action}Response>");
    xml.into_string()
}

/// ELB's error document: `RequestId` is a sibling of `Error`, not inside `ResponseMetadata` (ELB-SPEC §13.2).
pub(crate) fn error(error: &ApiError, request_id: &str) -> String {
    let mut xml = Xml::default();
    let _ = write!(xml.out, "<ErrorResponse xmlns=\"{NAMESPACE}\">");
    xml.element("Error", |xml| {
        xml.text("Type", error.fault());
        xml.text("Code", error.code);
        xml.text("Message", &error.message);
    });
    xml.text("RequestId", request_id);
    xml.out.push_str("</ErrorResponse>");
    xml.into_string()
}

/// A fresh uuid-shaped request id (version 4: random, with the version and variant bits set).
pub(crate) fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // The id only correlates logs; a time-based one is as good when the system's randomness fails.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_be_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = data_encoding::HEXLOWER.encode(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_nests_the_result_and_the_request_id_in_the_namespace() {
        let body = response("DescribeThing", "rid", |xml| {
            xml.strings("Names", &["a&b".to_owned(), "<c>".to_owned()]);
            xml.strings("Empty", &[]);
            xml.text("Quote", "it's \"x\"");
        });
        assert_eq!(
            body,
            "<DescribeThingResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\">\
             <DescribeThingResult><Names><member>a&amp;b</member><member>&lt;c&gt;</member></Names><Empty/>\
             <Quote>it&apos;s &quot;x&quot;</Quote></DescribeThingResult>\
             <ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></DescribeThingResponse>"
        );
    }

    #[test]
    fn characters_xml_does_not_allow_are_replaced() {
        let mut xml = Xml::default();
        xml.text("Message", "a\u{1}b\tc\u{FFFF}");
        assert_eq!(
            xml.into_string(),
            "<Message>a\u{FFFD}b\tc\u{FFFD}</Message>"
        );
    }

    #[test]
    fn an_empty_result_is_one_empty_element() {
        let body = response("DeleteThing", "rid", |_| {});
        assert!(body.contains("<DeleteThingResult/>"), "{body}");
    }

    #[test]
    fn the_error_document_puts_the_request_id_beside_the_error() {
        let body = error(&ApiError::load_balancer_not_found("no-such-lb"), "rid");
        assert_eq!(
            body,
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\"><Error>\
             <Type>Sender</Type><Code>LoadBalancerNotFound</Code>\
             <Message>There is no ACTIVE Load Balancer named &apos;no-such-lb&apos;</Message></Error>\
             <RequestId>rid</RequestId></ErrorResponse>"
        );
    }

    #[test]
    fn request_ids_are_fresh_version_4_uuids() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
