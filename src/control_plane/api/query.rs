//! The AWS Query protocol's parameters (ELB-SPEC §13.1): `application/x-www-form-urlencoded` pairs, decoded into
//! a tree an action's decoder reads with `required`, `optional`, `members` and `structure`.
//!
//! Rule: lists are `Name.member.N` (N from 1, no gap, no leading zero), an empty list is the bare `Name=`; a
//! struct is `Name.Field`; a map is `Name.entry.N.key` / `Name.entry.N.value`. A key given twice is refused.
//! Every decoder *takes* the parameters it reads, and [`Params::finish`] refuses what is left: an unknown
//! parameter is a `ValidationError`, not a setting silently ignored.
//!
//! Trade-off: parameters live in one ordered map keyed by their full names, and nested views copy the keys under
//! their prefix. Calls carry tens of parameters, so the copies cost nothing, and every error names the full key
//! (`Instances.member.2.InstanceId`) because each view knows its prefix.

use std::collections::BTreeMap;

use super::error::ApiError;

/// The most members a list may have: ELB's largest list is 1,000 instances per load balancer (ELB-SPEC §13.3).
pub(crate) const MAX_MEMBERS: u32 = 1000;

/// Parameters not yet read by the action's decoder, keyed below `prefix`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    /// What the keys are below (`""` at the top, `Instances.member.1.` in a member), for errors.
    prefix: String,
    values: BTreeMap<String, String>,
}

impl Params {
    /// Decodes a form-encoded body or query string; adds to what is there (a POST may carry signing parameters
    /// in its query string). A key given twice, here or across calls, is refused.
    pub(crate) fn add_form(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        for (key, value) in form_urlencoded::parse(bytes) {
            if key.is_empty() && value.is_empty() {
                continue; // `a=1&&b=2`: an empty pair, as form encoders sometimes write
            }
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(ApiError::validation(format!(
                    "The parameter name {key:?} is malformed: names are dot-separated parts, none of them empty"
                )));
            }
            if self.values.contains_key(key.as_ref()) {
                return Err(ApiError::validation(format!(
                    "The parameter {key} is given more than once"
                )));
            }
            self.values.insert(key.into_owned(), value.into_owned());
        }
        Ok(())
    }

    /// Parameters from one form-encoded text.
    pub(crate) fn from_form(bytes: &[u8]) -> Result<Params, ApiError> {
        let mut params = Params::default();
        params.add_form(bytes)?;
        Ok(params)
    }

    /// Whether nothing is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// What is left, as (key below the prefix, value) pairs in key order.
    pub(crate) fn into_pairs(self) -> Vec<(String, String)> {
        self.values.into_iter().collect()
    }

    /// Takes `name` if it is there.
    pub(crate) fn optional(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// Takes `name`; ELB's `MissingParameter` when it is absent or empty.
    pub(crate) fn required(&mut self, name: &str) -> Result<String, ApiError> {
        match self.values.remove(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(ApiError::missing_parameter(&self.full(name))),
        }
    }

    /// Takes an optional whole number within `range`; `ValidationError` naming the range otherwise.
    pub(crate) fn number(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<u32>, ApiError> {
        let Some(text) = self.values.remove(name) else {
            return Ok(None);
        };
        match text.parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::validation(format!(
                "{} must be a whole number from {} to {}, not {text:?}",
                self.full(name),
                range.start(),
                range.end()
            ))),
        }
    }

    /// Takes an optional boolean (`true` or `false`, any case, as the SDKs write them).
    pub(crate) fn boolean(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(text) = self.values.remove(name) else {
            return Ok(None);
        };
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(ApiError::validation(format!(
                "{} must be true or false, not {text:?}",
                self.full(name)
            ))),
        }
    }

    /// Takes every `Name.Field…` key as a struct's parameters (`Name.` stripped); empty when none is given.
    pub(crate) fn structure(&mut self, name: &str) -> Params {
        let prefix = format!("{name}.");
        let keys: Vec<String> = self
            .values
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect();
        let mut inner = Params {
            prefix: self.full(&prefix),
            values: BTreeMap::new(),
        };
        for key in keys {
            if let Some(value) = self.values.remove(&key) {
                inner.values.insert(key[prefix.len()..].to_owned(), value);
            }
        }
        inner
    }

    /// Takes the list `Name.member.N`: one [`Params`] per member, in order, whose keys are the member's fields
    /// (`""` for a list of plain values: read it with [`Params::required`]`("")`). The bare `Name=` is the empty
    /// list. Numbers must run 1, 2, … without a gap and without leading zeros.
    pub(crate) fn members(&mut self, name: &str) -> Result<Vec<Params>, ApiError> {
        let bare = self.values.remove(name);
        let mut outer = self.structure(name);
        let mut list = outer.structure("member");
        // `Name.Other` beside `Name.member.N`: not part of any list.
        outer.finish()?;
        let mut members: BTreeMap<u32, Params> = BTreeMap::new();
        let keys: Vec<String> = list.values.keys().cloned().collect();
        for key in keys {
            let number = key.split_once('.').map_or(key.as_str(), |(n, _)| n);
            let n = member_number(number).ok_or_else(|| {
                ApiError::validation(format!(
                    "{}{key} is not a list member: members are numbered from 1 to {MAX_MEMBERS}",
                    list.prefix
                ))
            })?;
            if members.contains_key(&n) {
                continue;
            }
            let mut member = list.structure(number);
            // A plain value is `Name.member.N` itself: it lands under the key "" of its member.
            if let Some(value) = list.values.remove(number) {
                member.values.insert(String::new(), value);
            }
            members.insert(n, member);
        }
        let full = self.full(name);
        if let Some(value) = bare {
            if !value.is_empty() || !members.is_empty() {
                return Err(ApiError::validation(format!(
                    "{full} is a list: give {full}.member.1, {full}.member.2, … (or {full}= alone for none)"
                )));
            }
        }
        for (expected, n) in (1..).zip(members.keys()) {
            if *n != expected {
                return Err(ApiError::validation(format!(
                    "{full}.member.{n} is given without {full}.member.{expected}: list members are numbered 1, 2, … without gaps"
                )));
            }
        }
        Ok(members.into_values().collect())
    }

    /// Takes a list of plain values (`Name.member.N=value`), each non-empty.
    pub(crate) fn strings(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        self.members(name)?
            .into_iter()
            .map(|mut member| {
                let value = member.required("")?;
                member.finish()?;
                Ok(value)
            })
            .collect()
    }

    /// Takes the map `Name.entry.N.key` / `Name.entry.N.value`, in order; a key without a value maps to "".
    pub(crate) fn entries(&mut self, name: &str) -> Result<Vec<(String, String)>, ApiError> {
        let mut map = self.structure(name);
        let mut entries = map.structure("entry");
        let mut numbered: BTreeMap<u32, (String, String)> = BTreeMap::new();
        let keys: Vec<String> = entries.values.keys().cloned().collect();
        for key in keys {
            let number = key.split_once('.').map_or(key.as_str(), |(n, _)| n);
            let n = member_number(number).ok_or_else(|| {
                ApiError::validation(format!(
                    "{}{key} is not a map entry: entries are numbered from 1",
                    entries.prefix
                ))
            })?;
            if numbered.contains_key(&n) {
                continue;
            }
            let mut entry = entries.structure(number);
            let key = entry.required("key")?;
            let value = entry.optional("value").unwrap_or_default();
            entry.finish()?;
            numbered.insert(n, (key, value));
        }
        entries.finish()?;
        map.finish()?;
        for (expected, n) in (1..).zip(numbered.keys()) {
            if *n != expected {
                return Err(ApiError::validation(format!(
                    "{}.entry.{n} is given without {}.entry.{expected}",
                    self.full(name),
                    self.full(name)
                )));
            }
        }
        Ok(numbered.into_values().collect())
    }

    /// Refuses whatever the action's decoder did not read (`ValidationError` naming the first such key).
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(key) => Err(ApiError::validation(format!(
                "The parameter {} is not recognized",
                self.full(key)
            ))),
        }
    }

    /// `name` with this view's prefix: the key as the caller wrote it.
    fn full(&self, name: &str) -> String {
        if name.is_empty() {
            return self.prefix.trim_end_matches('.').to_owned();
        }
        format!("{}{name}", self.prefix)
    }
}

/// A member number: 1–[`MAX_MEMBERS`], written without leading zeros.
fn member_number(text: &str) -> Option<u32> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| (1..=MAX_MEMBERS).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(form: &str) -> Params {
        Params::from_form(form.as_bytes()).unwrap()
    }

    #[test]
    fn values_are_percent_decoded_and_required_ones_must_be_there() {
        let mut p =
            params("Action=DescribeInstanceHealth&HealthCheck.Target=HTTP%3A80%2Fping&Name=a+b");
        assert_eq!(p.required("Action").unwrap(), "DescribeInstanceHealth");
        let mut check = p.structure("HealthCheck");
        assert_eq!(check.required("Target").unwrap(), "HTTP:80/ping");
        let error = check.required("Interval").unwrap_err();
        assert_eq!(error.code, "MissingParameter");
        assert_eq!(
            error.message,
            "The request must contain the parameter HealthCheck.Interval"
        );
        assert_eq!(p.optional("Name").as_deref(), Some("a b"));
        assert!(p.is_empty());
    }

    #[test]
    fn names_with_empty_parts_are_refused() {
        for form in ["L.member.1=a&L.member.1.=b", ".A=1", "A..B=1", "=value"] {
            let error = Params::from_form(form.as_bytes()).unwrap_err();
            assert_eq!(error.code, "ValidationError", "{form}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let error = Params::from_form(b"A=1&A=2").unwrap_err();
        assert_eq!(error.code, "ValidationError");
        let mut p = params("A=1");
        assert!(p.add_form(b"A=1").is_err());
    }

    #[test]
    fn lists_of_values_and_of_structs_come_in_order() {
        let mut p = params(
            "Names.member.2=b&Names.member.1=a&Names.member.10=j&Names.member.3=c&Names.member.4=d&Names.member.5=e\
             &Names.member.6=f&Names.member.7=g&Names.member.8=h&Names.member.9=i\
             &Instances.member.1.InstanceId=i-1&Instances.member.2.InstanceId=i-2",
        );
        assert_eq!(
            p.strings("Names").unwrap(),
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        );
        let ids: Vec<String> = p
            .members("Instances")
            .unwrap()
            .into_iter()
            .map(|mut m| m.required("InstanceId").unwrap())
            .collect();
        assert_eq!(ids, ["i-1", "i-2"]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_bare_key_is_the_empty_list_and_absence_is_too() {
        let mut p = params("PolicyNames=");
        assert!(p.strings("PolicyNames").unwrap().is_empty());
        assert!(p.strings("Other").unwrap().is_empty());
        assert!(params("PolicyNames=x").strings("PolicyNames").is_err());
    }

    #[test]
    fn gaps_zeros_and_bad_numbers_are_refused() {
        for form in [
            "L.member.1=a&L.member.3=c",
            "L.member.2=b",
            "L.member.0=z",
            "L.member.01=a",
            "L.member.x=a",
            "L.member.1001=a",
            "L.member.-1=a",
        ] {
            let error = params(form).strings("L").unwrap_err();
            assert_eq!(error.code, "ValidationError", "{form}");
        }
        let error = params("L.member.1=a&L.member.3=c")
            .strings("L")
            .unwrap_err();
        assert!(
            error
                .message
                .contains("L.member.3 is given without L.member.2"),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_unknown_member_field_names_its_full_key() {
        let mut p = params("Instances.member.1.InstanceId=i-1&Instances.member.1.Colour=red");
        let mut member = p.members("Instances").unwrap().remove(0);
        member.required("InstanceId").unwrap();
        let error = member.finish().unwrap_err();
        assert_eq!(
            error.message,
            "The parameter Instances.member.1.Colour is not recognized"
        );
    }

    #[test]
    fn maps_read_entries_in_order() {
        let mut p = params(
            "Attrs.entry.2.key=b&Attrs.entry.2.value=2&Attrs.entry.1.key=a&Attrs.entry.1.value=1",
        );
        assert_eq!(
            p.entries("Attrs").unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
        assert!(params("M.entry.2.key=b").entries("M").is_err());
        assert!(params("M.entry.1.value=v").entries("M").is_err());
        assert!(params("M.entry.1.key=k&M.entry.1.colour=c")
            .entries("M")
            .is_err());
    }

    #[test]
    fn what_no_decoder_read_is_refused() {
        let mut p = params("LoadBalancerName=web&Colour=red");
        p.required("LoadBalancerName").unwrap();
        let error = p.finish().unwrap_err();
        assert_eq!(error.code, "ValidationError");
        assert_eq!(error.message, "The parameter Colour is not recognized");
    }

    #[test]
    fn numbers_keep_to_their_range() {
        assert_eq!(
            params("PageSize=400").number("PageSize", 1..=400).unwrap(),
            Some(400)
        );
        assert_eq!(params("").number("PageSize", 1..=400).unwrap(), None);
        for bad in ["0", "401", "x", "-1", ""] {
            assert!(
                params(&format!("PageSize={bad}"))
                    .number("PageSize", 1..=400)
                    .is_err(),
                "{bad}"
            );
        }
    }
}
