//! The house's rules, read from the source: the layers import downwards only, and no modules import each other in
//! a circle.
//!
//! Layers, highest first: entry (server, testing, demo) > control plane > DNS responder > data plane > wire format,
//! observability, shutdown > config. Inside the data plane: node > front end (HTTP) and tcp (Layer 4) > proxy > passive-check reporting >
//! routing > snapshot > back end > headers, TLS > bodies and ELB's responses. A module may import its own layer or
//! any lower one. Imports are read from `use crate::...` and `super::` paths and from `crate::...` paths in code;
//! comments and test modules are left out (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// (module path prefix, layer rank, data-plane rank). Higher ranks may import lower ones.
const LAYERS: &[(&str, u32, u32)] = &[
    ("server", 6, 0),
    ("main", 6, 0),
    ("testing", 6, 0),
    ("demo", 6, 0),
    ("bench_support", 6, 0),
    ("fuzz_support", 6, 0),
    ("control_plane", 5, 0),
    ("dns", 4, 0),
    ("data_plane::node", 3, 9),
    ("data_plane::front_end", 3, 8),
    ("data_plane::tcp", 3, 8),
    ("data_plane::proxy", 3, 7),
    ("data_plane::passive", 3, 6),
    ("data_plane::routing", 3, 5),
    ("data_plane::snapshot", 3, 4),
    ("data_plane::back_end", 3, 3),
    ("data_plane::headers", 3, 2),
    ("data_plane::tls", 3, 2),
    ("data_plane::body", 3, 1),
    ("data_plane::tunnel", 3, 1),
    ("data_plane::elb_response", 3, 1),
    ("data_plane", 3, 10),
    ("http1", 2, 0),
    ("http2", 2, 0),
    ("observability", 2, 0),
    ("shutdown", 2, 0),
    ("notify", 2, 0),
    ("config", 1, 0),
];

fn rank(module: &str) -> Option<(u32, u32)> {
    LAYERS
        .iter()
        .find(|(prefix, _, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .map(|&(_, layer, data)| (layer, data))
}

/// Every module of the library (its path, `a::b`) and its source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path
                .strip_prefix(src)
                .expect("under src/")
                .with_extension("");
            let module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("::");
            // The crate root and the binary only declare and start things; test modules may reach anywhere.
            if module == "lib"
                || module == "main"
                || module.ends_with("tests")
                || module.contains("::tests::")
            {
                continue;
            }
            found.insert(module, path);
        }
    }
    found
}

/// The code of a file without comments and without its test modules (`#[cfg(test)] mod x { ... }` runs to the end
/// of the file by the house's convention; `#[cfg(test)] mod tests;` is a declaration, skipped).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            match lines.peek().map(|next| next.trim_start()) {
                Some(next) if next.starts_with("mod ") && next.ends_with(';') => {
                    lines.next();
                    continue;
                }
                Some(next) if next.contains("mod ") => break,
                _ => continue,
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module paths a piece of code refers to, absolute, as written (`crate::a::b::Item`, with `super::` and
/// `self::` resolved against `module`, groups `{x, y::z}` expanded).
fn references(code: &str, module: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let at_word_start = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let rest = &code[i..];
        let base: Option<(Vec<String>, usize)> = if !at_word_start {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut base: Vec<String> = module.split("::").map(str::to_owned).collect();
            let mut skip = 0;
            while code[i + skip..].starts_with("super::") {
                base.pop();
                skip += "super::".len();
            }
            Some((base, skip))
        } else if rest.starts_with("self::") {
            Some((
                module.split("::").map(str::to_owned).collect(),
                "self::".len(),
            ))
        } else {
            None
        };
        match base {
            Some((base, skip)) => {
                let (paths, used) = path_at(&code[i + skip..]);
                for path in paths {
                    let mut full = base.clone();
                    full.extend(path);
                    found.push(full);
                }
                i += skip + used.max(1);
            }
            None => i += 1,
        }
    }
    found
}

/// The paths starting at `text` (`a::b::c`, or `a::{b, c::d}`), and how many bytes they took.
fn path_at(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            segments.push(text[start..i].to_owned());
        }
        if text[i..].starts_with("::{") {
            i += 3;
            let mut depth = 1;
            let group_start = i;
            while i < bytes.len() && depth > 0 {
                match bytes[i] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                i += 1;
            }
            let group = &text[group_start..i.saturating_sub(1)];
            let mut paths = Vec::new();
            for member in split_top_level(group) {
                let (inner, _) = path_at(member.trim());
                for path in inner {
                    let mut full = segments.clone();
                    full.extend(path);
                    paths.push(full);
                }
            }
            return (paths, i);
        }
        if text[i..].starts_with("::") && i > start {
            i += 2;
            continue;
        }
        return (vec![segments], i);
    }
}

fn split_top_level(group: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, b) in group.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&group[start..]);
    parts
}

/// `use child::...` statements name a child module without `self::`: written as `self::child::...` so that
/// [`references`] sees them.
fn with_children_explicit(code: &str, module: &str, known: &BTreeMap<String, PathBuf>) -> String {
    let mut out = String::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        let rest = trimmed
            .strip_prefix("pub use ")
            .or_else(|| trimmed.strip_prefix("use "));
        let child = rest.and_then(|rest| rest.split("::").next());
        match (rest, child) {
            (Some(rest), Some(child)) if known.contains_key(&format!("{module}::{child}")) => {
                let public = if trimmed.starts_with("pub ") {
                    "pub "
                } else {
                    ""
                };
                out.push_str(&format!("{public}use self::{rest}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// What a module re-exports: the name it publishes -> the path of the item.
fn re_exports(code: &str, module: &str) -> BTreeMap<String, Vec<String>> {
    let mut exports = BTreeMap::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(rest) = statement.strip_prefix("pub use ") else {
            continue;
        };
        for path in references(&format!("{rest};"), module) {
            if let Some(name) = path.last() {
                exports.insert(name.clone(), path.clone());
            }
        }
    }
    exports
}

/// The module that defines what `path` names: the deepest known module it lies inside, followed through that
/// module's re-exports (a parent that publishes its children's items is not where they live).
fn target(
    path: &[String],
    known: &BTreeMap<String, PathBuf>,
    exports: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    depth: usize,
) -> Option<String> {
    let n = (1..=path.len())
        .rev()
        .find(|&n| known.contains_key(&path[..n].join("::")))?;
    let module = path[..n].join("::");
    if depth < 8 {
        if let Some(reexported) = path.get(n).and_then(|name| exports.get(&module)?.get(name)) {
            if reexported.as_slice() != path {
                return target(reexported, known, exports, depth + 1);
            }
        }
    }
    Some(module)
}

/// Module -> the modules it imports (a module's own `pub use` lines publish, they are followed, not counted).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(src);
    let mut codes = BTreeMap::new();
    let mut exports = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).expect("source is readable");
        let code = with_children_explicit(&code(&text), module, &known);
        exports.insert(module.clone(), re_exports(&code, module));
        codes.insert(module.clone(), code);
    }
    let mut edges = BTreeMap::new();
    for (module, code) in &codes {
        let own: String = code
            .split_inclusive(';')
            .filter(|statement| !statement.trim_start().starts_with("pub use "))
            .collect();
        let mut to = BTreeSet::new();
        for path in references(&own, module) {
            if let Some(target) = target(&path, &known, &exports, 0) {
                if &target != module {
                    to.insert(target);
                }
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// Whether `ancestor` encloses `module` (a child lives inside its parent and may use what it defines).
fn encloses(ancestor: &str, module: &str) -> bool {
    module.starts_with(&format!("{ancestor}::"))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = modules(&src())
        .into_keys()
        .filter(|m| rank(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer in LAYERS: {unplaced:?}"
    );
}

#[test]
fn layers_import_downwards_only() {
    let mut wrong = Vec::new();
    for (from, targets) in graph(&src()) {
        let Some(from_rank) = rank(&from) else {
            continue;
        };
        for to in targets {
            let Some(to_rank) = rank(&to) else { continue };
            let upwards = to_rank.0 > from_rank.0
                || (to_rank.0 == from_rank.0 && from_rank.0 == 3 && to_rank.1 > from_rank.1);
            if upwards {
                wrong.push(format!("{from} imports {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let edges = graph(&src());
    // Tarjan's strongly connected components; any with more than one module is a cycle.
    struct Search<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        cycles: Vec<Vec<&'a str>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if encloses(w, v) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.cycles.push(component);
                }
            }
        }
    }
    let mut search = Search {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for v in edges.keys() {
        if !search.index.contains_key(v.as_str()) {
            search.visit(v);
        }
    }
    assert!(
        search.cycles.is_empty(),
        "modules that import each other in a circle: {:?}",
        search.cycles
    );
}

/// The checker itself: it must see the imports it is meant to catch.
#[test]
fn the_reader_finds_grouped_relative_and_inline_paths() {
    let code = code(
        "use crate::a::{b::X, c::{d, e::F}};\nuse super::sib::Y;\n// crate::comment::ignored\nlet z = crate::g::h();\n\
         #[cfg(test)]\nmod tests;\nuse self::kid::K;\n#[cfg(test)]\nmod tests {\n use crate::test_only::T;\n}\n",
    );
    let found: BTreeSet<String> = references(&code, "p::q")
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "a::b::X",
        "a::c::d",
        "a::c::e::F",
        "p::sib::Y",
        "g::h",
        "p::q::kid::K",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(found, expected);
}

/// A cycle the checker must report: a made-up pair of modules importing each other.
#[test]
fn a_planted_cycle_and_an_upward_import_are_caught() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("data_plane")).unwrap();
    std::fs::write(
        dir.join("data_plane/body.rs"),
        "use crate::control_plane::X;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("control_plane.rs"),
        "use crate::data_plane::body::Y;\n",
    )
    .unwrap();
    let edges = graph(dir);
    assert!(edges["data_plane::body"].contains("control_plane"));
    assert!(edges["control_plane"].contains("data_plane::body"));
    assert!(rank("data_plane::body").unwrap().0 < rank("control_plane").unwrap().0);
}

/// Modules stay small enough to read in one sitting (issue 11: no module over ~600 lines counting its tests).
#[test]
fn no_module_is_over_six_hundred_lines() {
    let mut long = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path)
                    .expect("readable")
                    .lines()
                    .count();
                if lines > 600 {
                    long.push(format!("{} ({lines} lines)", path.display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "modules over 600 lines: {long:?}");
}
