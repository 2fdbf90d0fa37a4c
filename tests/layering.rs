//! The shape of `src/`, checked on every test run: imports only run down the layers
//! below (or sideways within one layer), no two files import each other even
//! through others, and `unsafe` stays in the files that talk to Redis's C API.
//!
//! An import is any `use crate::…` (grouped ones included), any path written
//! `crate::a::b` in code, `super::…` (the parent module), and in a file that
//! declares `mod child;`, any `child::…` path. A path names the deepest file it
//! reaches (`crate::core::Mailbox` is `core/mod.rs`, `crate::core::message::Parts`
//! is `core/message.rs`); a folder's `mod.rs` is a file of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layers from the bottom up; a file may import from its own layer and the ones
/// before it. Matched by the longest prefix of the path under `src/`.
const LAYERS: &[(&str, &[&str])] = &[
    // Pure Rust: no Redis types, no context.
    ("base", &["core/", "config.rs", "errors.rs", "counters.rs", "quota.rs"]),
    // Values that cross the boundary: the data types, ids, effects, arguments.
    ("values", &["types/", "ids.rs", "effects.rs", "args.rs"]),
    // Redis glue: keys, replication, signals, replies, blocking; what services only queue.
    ("server", &["server/", "receipt_queue.rs", "schedule.rs"]),
    // Services the commands call: delivery, access, push, upkeep.
    ("services", &["delivery.rs", "access.rs", "push.rs", "upkeep.rs"]),
    // Storing the receipts a command queued (a receipt is a delivery).
    ("receipts", &["receipts.rs"]),
    // Entry points: the commands and the timer.
    ("commands", &["commands/", "sweeper.rs"]),
    // Registration with the server: the module, INFO, server events, command info.
    ("registration", &["lib.rs", "acl_categories.rs", "server_events.rs", "command_info.rs"]),
];

/// Files that may hold `unsafe` and call `redis_module::raw`: the FFI homes. Every
/// other file says `#![forbid(unsafe_code)]`, or `#![deny(unsafe_code)]` for a folder
/// whose `mod.rs` holds a home (a forbid there would reach the home too); only a
/// home says `allow(unsafe_code)`.
const FFI_HOMES: &[&str] = &[
    "server/",
    "types/ffi.rs",
    "lib.rs",
    "acl_categories.rs",
    "server_events.rs",
    "command_info.rs",
    // Memory tricks, not FFI: the envelope handle, a thin `Arc<[u8]>`.
    "core/message.rs",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `core/message.rs` for `src/core/message.rs`.
fn rel(path: &Path) -> String {
    path.strip_prefix(src_dir()).unwrap().to_string_lossy().replace('\\', "/")
}

/// The module path of a file: `core/message.rs` → ["core", "message"]; `core/mod.rs`
/// → ["core"]; `lib.rs` → [].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The deepest file that the module path `segments` reaches; `lib.rs` when none.
fn file_of(files: &BTreeSet<String>, segments: &[String]) -> String {
    let mut found = "lib.rs".to_string();
    let mut prefix = String::new();
    for seg in segments {
        let as_file = format!("{prefix}{seg}.rs");
        let as_dir = format!("{prefix}{seg}/mod.rs");
        if files.contains(&as_file) {
            found = as_file;
        } else if files.contains(&as_dir) {
            found = as_dir;
        } else {
            break;
        }
        prefix = format!("{prefix}{seg}/");
    }
    found
}

/// The text without comments and string literals (which may spell paths).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if c == b'"' {
            // Skip to the closing quote (escapes skipped too); a lifetime or char
            // literal never holds a double quote unescaped.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                if bytes[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && bytes.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' or '{'.
            out.push_str("' '");
            i += 3;
        } else if c == b'\'' && bytes.get(i + 1) == Some(&b'\\') {
            // An escaped char literal such as '\'' or '\n'.
            let end = text[i + 2..].find('\'').map_or(bytes.len(), |p| i + 3 + p);
            out.push_str("' '");
            i = end;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    expand_into(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand_into(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let head_segs: Vec<String> = head.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
        let depth = prefix.len();
        prefix.extend(head_segs);
        // Split the inner list at top-level commas.
        let (mut level, mut start) = (0, 0);
        let inner_bytes: Vec<char> = inner.chars().collect();
        for (i, c) in inner_bytes.iter().enumerate() {
            match c {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    let part: String = inner_bytes[start..i].iter().collect();
                    expand_into(&part, prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        let part: String = inner_bytes[start..].iter().collect();
        expand_into(&part, prefix, out);
        prefix.truncate(depth);
    } else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let mut segs = prefix.clone();
        segs.extend(
            path.split("::").filter(|s| !s.is_empty() && *s != "self" && *s != "*").map(str::to_string),
        );
        out.push(segs);
    }
}

/// The paths a file imports, as module paths from the crate root.
fn imports(file: &str, text: &str) -> Vec<Vec<String>> {
    let code = code_only(text);
    let module = module_of(file);
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_string())
        })
        .collect();
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`) by indent: `super::` inside one stays in the file.
    let mut inline: Vec<usize> = Vec::new();
    let lines: Vec<&str> = code.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        while inline.last().is_some_and(|&open| line.trim_start().starts_with('}') && indent == open) {
            inline.pop();
        }
        let t = line.trim_start();
        let decl = t.strip_prefix("pub(crate) ").or_else(|| t.strip_prefix("pub ")).unwrap_or(t);
        if decl.starts_with("mod ") && decl.trim_end().ends_with('{') {
            inline.push(indent);
        }
        // Gather a whole `use …;` statement, which may span lines.
        let mut stmt = String::new();
        if decl.starts_with("use ") {
            let mut j = i;
            loop {
                stmt.push_str(lines[j]);
                stmt.push(' ');
                if lines[j].contains(';') || j + 1 >= lines.len() {
                    break;
                }
                j += 1;
            }
            i = j;
        } else {
            stmt.push_str(line);
        }
        let is_use = decl.starts_with("use ");
        if is_use {
            let tree = stmt.trim().trim_start_matches("pub(crate) ").trim_start_matches("pub ");
            let tree = tree.trim_start_matches("use ").trim_end().trim_end_matches(';');
            for path in expand(tree) {
                if let Some(p) = resolve(&module, &children, inline.len(), &path) {
                    out.push(p);
                }
            }
        } else {
            // Paths written in code: `crate::a::b`, `super::a`, `child::a`.
            let chars: Vec<char> = stmt.chars().collect();
            let mut k = 0;
            while k < chars.len() {
                if is_ident(chars[k]) && (k == 0 || (!is_ident(chars[k - 1]) && chars[k - 1] != ':')) {
                    let start = k;
                    while k < chars.len()
                        && (is_ident(chars[k]) || (chars[k] == ':' && chars.get(k + 1) == Some(&':')))
                    {
                        k += if chars[k] == ':' { 2 } else { 1 };
                    }
                    let word: String = chars[start..k].iter().collect();
                    if word.contains("::") {
                        let path: Vec<String> =
                            word.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
                        if let Some(p) = resolve(&module, &children, inline.len(), &path) {
                            out.push(p);
                        }
                    }
                } else {
                    k += 1;
                }
            }
        }
        i += 1;
    }
    out
}

/// A path as written in `module` → a module path from the crate root, or `None`
/// when it leaves the crate (std, redis_module, …) or stays in the file.
fn resolve(
    module: &[String],
    children: &[String],
    inline_depth: usize,
    path: &[String],
) -> Option<Vec<String>> {
    let first = path.first()?;
    if first == "crate" {
        return Some(path[1..].to_vec());
    }
    if first == "super" {
        let ups = path.iter().take_while(|s| *s == "super").count();
        if ups <= inline_depth {
            return None;
        }
        let ups = ups - inline_depth;
        if ups > module.len() {
            return None;
        }
        let mut out = module[..module.len() - ups].to_vec();
        out.extend_from_slice(&path[path.iter().take_while(|s| *s == "super").count()..]);
        return Some(out);
    }
    if inline_depth == 0 && children.contains(first) {
        let mut out = module.to_vec();
        out.extend_from_slice(path);
        return Some(out);
    }
    None
}

fn layer_of(file: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (at, (_, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in prefixes.iter() {
            if file.starts_with(prefix) && best.is_none_or(|(len, _)| prefix.len() > len) {
                best = Some((prefix.len(), at));
            }
        }
    }
    best.map(|(_, at)| at)
}

struct Source {
    files: BTreeSet<String>,
    texts: BTreeMap<String, String>,
}

fn source() -> Source {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    let mut texts = BTreeMap::new();
    for path in paths {
        texts.insert(rel(&path), fs::read_to_string(&path).unwrap());
    }
    Source { files: texts.keys().cloned().collect(), texts }
}

/// file → the files it imports (itself left out), with one path that shows each edge.
fn graph(src: &Source) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (file, text) in &src.texts {
        let entry = edges.entry(file.clone()).or_default();
        for path in imports(file, text) {
            let to = file_of(&src.files, &path);
            if &to != file {
                entry.entry(to).or_insert_with(|| format!("crate::{}", path.join("::")));
            }
        }
    }
    edges
}

#[test]
fn every_file_has_a_layer() {
    let src = source();
    let lost: Vec<_> = src.files.iter().filter(|f| layer_of(f).is_none()).collect();
    assert!(lost.is_empty(), "files of src/ in no layer of tests/layering.rs: {lost:?}");
}

#[test]
fn imports_run_down_the_layers() {
    let src = source();
    let mut upward = Vec::new();
    for (from, tos) in graph(&src) {
        let Some(from_layer) = layer_of(&from) else { continue };
        for (to, via) in tos {
            let Some(to_layer) = layer_of(&to) else { continue };
            if to_layer > from_layer {
                upward.push(format!(
                    "  {from} ({}) imports {to} ({}) by {via}",
                    LAYERS[from_layer].0, LAYERS[to_layer].0
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports running up a layer:\n{}", upward.join("\n"));
}

#[test]
fn no_file_imports_itself_through_others() {
    let src = source();
    let edges = graph(&src);
    // Depth-first search; a back edge closes a cycle, reported with its path.
    fn visit(
        at: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(at.to_string(), 1);
        stack.push(at.to_string());
        for (to, via) in edges.get(at).into_iter().flatten() {
            match state.get(to.as_str()).copied().unwrap_or(0) {
                0 => visit(to, edges, state, stack, cycles),
                1 => {
                    let from = stack.iter().position(|f| f == to).unwrap_or(0);
                    let mut ring: Vec<String> = stack[from..].to_vec();
                    ring.push(to.clone());
                    cycles.push(format!("  {}  (closed by {at} → {to} by {via})", ring.join(" → ")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(at.to_string(), 2);
    }
    let (mut state, mut cycles) = (BTreeMap::new(), Vec::new());
    for file in edges.keys() {
        if !state.contains_key(file) {
            visit(file, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles among the files of src/:\n{}", cycles.join("\n"));
}

fn is_ffi_home(file: &str) -> bool {
    FFI_HOMES.iter().any(|home| file.starts_with(home))
}

#[test]
fn unsafe_code_stays_in_the_ffi_homes() {
    let src = source();
    let mut wrong = Vec::new();
    for (file, text) in &src.texts {
        let code = code_only(text);
        if is_ffi_home(file) {
            continue;
        }
        let says = |attr: &str| text.lines().any(|l| l.trim() == attr);
        if !says("#![forbid(unsafe_code)]") && !says("#![deny(unsafe_code)]") {
            wrong.push(format!("  {file}: no #![forbid(unsafe_code)]"));
        }
        if code.contains("allow(unsafe_code)") {
            wrong.push(format!("  {file}: allows unsafe code"));
        }
        if code.replace("os::raw::", "").contains("raw::") {
            wrong.push(format!("  {file}: calls redis_module::raw outside an FFI home"));
        }
    }
    assert!(wrong.is_empty(), "unsafe code out of place:\n{}", wrong.join("\n"));
}

#[test]
fn every_unsafe_block_says_why_it_is_sound() {
    let src = source();
    let mut bare = Vec::new();
    for (file, text) in &src.texts {
        let lines: Vec<&str> = text.lines().collect();
        let code = code_only(text);
        for (n, line) in code.lines().enumerate() {
            // A block, not an `unsafe fn` or `unsafe impl` (those carry `# Safety` docs).
            if !line.contains("unsafe {") {
                continue;
            }
            let said = (n.saturating_sub(6)..=n).any(|k| lines.get(k).is_some_and(|l| l.contains("SAFETY:")));
            if !said {
                bare.push(format!("  {file}:{}: {}", n + 1, lines.get(n).unwrap_or(&"").trim()));
            }
        }
    }
    assert!(bare.is_empty(), "unsafe blocks without a // SAFETY: line above them:\n{}", bare.join("\n"));
}
