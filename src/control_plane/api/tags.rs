//! Tags: AddTags, RemoveTags, DescribeTags, and CreateLoadBalancer's `Tags`.
//!
//! Rule: ELB's limits: a key of 1–128 characters, a value of at most 256, at most 10 tags per load balancer
//! (`TooManyTags`), a key given twice in one call is `DuplicateTagKeys`; AddTags and RemoveTags name exactly
//! one load balancer, DescribeTags up to 20. Adding a key that exists replaces its value; removing a key that
//! is not there is no error. A load balancer's tags are one record, written whole.
//!
//! Trade-off: tags are data only, as in ELB: nothing in elbe routes by them. A load balancer of the
//! configuration file starts with none.

use super::apply::View;
use super::error::ApiError;
use super::query::Params;
use super::xml::Xml;
use crate::control_plane::store::definitions::{Tag, Tags};
use crate::control_plane::store::{Change, Key, Record, Records};

/// The most tags a load balancer has (ELB's quota).
const MAX_TAGS: usize = 10;

/// Tags in the order given.
pub(crate) type TagList = Vec<Tag>;

/// AddTags' and RemoveTags' parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagsRequest {
    pub load_balancer: String,
    pub tags: TagList,
}

/// Reads the list `name` of tags (`keys_only`: RemoveTags, which takes no values).
pub(crate) fn decode_tags(
    params: &mut Params,
    name: &str,
    keys_only: bool,
) -> Result<TagList, ApiError> {
    let mut tags: TagList = Vec::new();
    for mut member in params.members(name)? {
        let key = member.required("Key")?;
        let value = if keys_only {
            String::new()
        } else {
            member.optional("Value").unwrap_or_default()
        };
        member.finish()?;
        check_tag(&key, &value)?;
        if tags.iter().any(|tag| tag.key == key) {
            return Err(ApiError::elb(
                "DuplicateTagKeys",
                format!("Tag key {key:?} is given more than once"),
            ));
        }
        tags.push(Tag { key, value });
    }
    if tags.len() > MAX_TAGS {
        return Err(too_many());
    }
    Ok(tags)
}

/// ELB's rules for a tag: a key of 1 to 128 characters, a value of at most 256, both of letters, digits, spaces
/// and `_ . : / = + - @`; keys starting with `aws:` are AWS's own.
fn check_tag(key: &str, value: &str) -> Result<(), ApiError> {
    let allowed = |text: &str| {
        text.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
    };
    if key.chars().count() > 128 || value.chars().count() > 256 || !allowed(key) || !allowed(value)
    {
        return Err(ApiError::validation(format!(
            "Tag {key:?}: keys have 1 to 128 characters and values at most 256, of letters, digits, spaces \
             and _ . : / = + - @"
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(ApiError::validation(format!(
            "Tag {key:?}: keys starting with aws: are reserved for AWS"
        )));
    }
    Ok(())
}

fn too_many() -> ApiError {
    ApiError::elb(
        "TooManyTags",
        format!("A load balancer has at most {MAX_TAGS} tags"),
    )
}

/// AddTags (`keys_only` false) or RemoveTags (true): one load balancer and at least one tag.
pub(crate) fn decode_request(
    params: &mut Params,
    keys_only: bool,
) -> Result<TagsRequest, ApiError> {
    let names = params.strings("LoadBalancerNames")?;
    let load_balancer = match names.as_slice() {
        [] => return Err(ApiError::missing_parameter("LoadBalancerNames")),
        [one] => one.clone(),
        _ => {
            return Err(ApiError::validation(
                "Tags are changed on one load balancer per call",
            ))
        }
    };
    let tags = decode_tags(params, "Tags", keys_only)?;
    if tags.is_empty() {
        return Err(ApiError::missing_parameter("Tags"));
    }
    Ok(TagsRequest {
        load_balancer,
        tags,
    })
}

/// DescribeTags: 1 to 20 names.
pub(crate) fn decode_describe(params: &mut Params) -> Result<Vec<String>, ApiError> {
    let names = params.strings("LoadBalancerNames")?;
    if names.is_empty() {
        return Err(ApiError::missing_parameter("LoadBalancerNames"));
    }
    if names.len() > 20 {
        return Err(ApiError::validation(
            "DescribeTags takes at most 20 load balancer names",
        ));
    }
    Ok(names)
}

/// The `tags` record of `load_balancer`.
pub(crate) fn record(load_balancer: &str, tags: TagList) -> Change {
    Change::Put(Record::Tags(Tags {
        load_balancer: load_balancer.to_owned(),
        tags,
    }))
}

/// The tags of `load_balancer` now.
fn held(records: &Records, load_balancer: &str) -> TagList {
    let key = Key::Tags {
        load_balancer: load_balancer.to_owned(),
    };
    match records.get(&key).map(|versioned| &versioned.record) {
        Some(Record::Tags(tags)) => tags.tags.clone(),
        _ => Vec::new(),
    }
}

/// AddTags: each key added, or its value replaced.
pub(crate) fn plan_add(view: &View<'_>, request: &TagsRequest) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    let mut tags = held(view.records, &lb.name);
    for tag in &request.tags {
        match tags.iter_mut().find(|held| held.key == tag.key) {
            Some(held) => held.value = tag.value.clone(),
            None => tags.push(tag.clone()),
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(too_many());
    }
    Ok(vec![record(&lb.name, tags)])
}

/// RemoveTags: each key gone.
pub(crate) fn plan_remove(view: &View<'_>, request: &TagsRequest) -> Result<Vec<Change>, ApiError> {
    let lb = view.load_balancer(&request.load_balancer)?;
    let mut tags = held(view.records, &lb.name);
    let before = tags.len();
    tags.retain(|held| !request.tags.iter().any(|tag| tag.key == held.key));
    if tags.len() == before {
        return Ok(Vec::new());
    }
    Ok(vec![record(&lb.name, tags)])
}

/// `TagDescriptions`: each named load balancer (which must run) and its tags.
pub(crate) fn describe(
    running: &[String],
    records: &Records,
    names: &[String],
    xml: &mut Xml,
) -> Result<(), ApiError> {
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        let running = running
            .iter()
            .find(|running| running.eq_ignore_ascii_case(name))
            .ok_or_else(|| ApiError::load_balancer_not_found(name))?;
        found.push(running.clone());
    }
    xml.list("TagDescriptions", &found, |xml, name| {
        xml.text("LoadBalancerName", name);
        xml.list("Tags", &held(records, name), |xml, tag| {
            xml.text("Key", &tag.key);
            xml.text("Value", &tag.value);
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_elbs_rules() {
        let code = |form: &str| {
            let mut params = Params::from_form(form.as_bytes()).unwrap();
            decode_request(&mut params, false)
                .map(|_| ())
                .map_err(|e| e.code)
        };
        assert_eq!(
            code("LoadBalancerNames.member.1=w&Tags.member.1.Key=team&Tags.member.1.Value=a b:c@d"),
            Ok(())
        );
        assert_eq!(
            code("LoadBalancerNames.member.1=w&Tags.member.1.Key=bad%01&Tags.member.1.Value=v"),
            Err("ValidationError")
        );
        assert_eq!(
            code("LoadBalancerNames.member.1=w&Tags.member.1.Key=aws:name"),
            Err("ValidationError")
        );
        assert_eq!(
            code("LoadBalancerNames.member.1=w&Tags.member.1.Key=k&Tags.member.1.Value=%3Cx%3E"),
            Err("ValidationError")
        );
    }

    #[test]
    fn remove_tags_reads_keys_only() {
        let mut params =
            Params::from_form(b"LoadBalancerNames.member.1=shop&Tags.member.1.Key=team").unwrap();
        let request = decode_request(&mut params, true).unwrap();
        params.finish().unwrap();
        assert_eq!(
            request.tags,
            [Tag {
                key: "team".into(),
                value: String::new()
            }]
        );
    }
}
