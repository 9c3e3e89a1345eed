//! The configuration parser (`config::parse`: TOML -> raw serde model -> validated `Config`).
//!
//! Input: the file's text (inputs that are not UTF-8 are skipped: `config::load` reads the file as a string and
//! refuses those before parsing).
//!
//! Invariants:
//! - a refusal names the file, and a key path or a line (`elbe check` and a refused reload print nothing else);
//! - parsing is deterministic;
//! - elbe has no `check --print`, so the round trip is through TOML itself: a file that parses, read as a TOML
//!   table and written back by the `toml` crate (other quoting, order and layout), parses to the same `Config`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/elbe.toml");
    let parsed = elbe::config::parse(text, path);
    assert_eq!(parsed, elbe::config::parse(text, path), "parsing is deterministic");
    let config = match parsed {
        Ok(config) => config,
        Err(error) => {
            assert_eq!(error.file, path, "the error names the file");
            assert!(!error.reason.trim().is_empty(), "an error without a reason: {error:?}");
            assert!(
                !error.key.is_empty() || error.reason.contains("line "),
                "an error naming neither a key nor a line: {error:?}"
            );
            return;
        }
    };
    let table: toml::Table = toml::from_str(text).expect("a file elbe parses is a TOML table");
    let rewritten = toml::to_string(&table).expect("a TOML table can be written");
    match elbe::config::parse(&rewritten, path) {
        Ok(again) => assert_eq!(again, config, "the rewritten file {rewritten:?} means something else"),
        Err(error) => panic!("the rewritten file {rewritten:?} is refused: {error}"),
    }
});
