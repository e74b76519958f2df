//! The library's layout rules, checked on its source: no import cycle between the top-level
//! modules of `src/` (each module is a layer: it uses only modules below it), nor between the
//! files of one top-level module (`detection::scan` and `detection::group`, say), no command-line,
//! terminal, server or Python crate among its dependencies, and no printing outside tests
//! (progress and notes go through `ferkit::events`, errors through `ferkit::Error`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)]` module and without comment lines.
fn code_outside_tests(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Top-level module -> the other top-level modules its code names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src();
    let mut graph = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let top =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" {
            continue;
        }
        let code = code_outside_tests(&file);
        let deps: &mut BTreeSet<String> = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

/// The first path segments that the use paths after each `prefix` in `code` start with:
/// `super::{tta::{Tta, x}, batch::y}` gives `tta` and `batch`.
fn first_segments(code: &str, prefix: &str) -> BTreeSet<String> {
    let word =
        |s: &str| -> String { s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The items of the brace group at depth 0, each one's first segment.
            let (mut depth, mut item_start) = (0usize, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.insert(word(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(word(rest));
        }
    }
    out
}

/// For each top-level module that is a folder: its files (submodules) -> the sibling submodules
/// their code names, as `super::<sibling>` or `crate::<module>::<sibling>`. The folder's
/// `mod.rs` is the module itself, not a node.
fn submodule_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut graphs = BTreeMap::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let top = dir.file_name().unwrap().to_string_lossy().to_string();
        let files: Vec<PathBuf> = rust_files(&dir).into_iter().filter(|f| !f.ends_with("mod.rs")).collect();
        let name = |f: &Path| {
            f.strip_prefix(&dir)
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        };
        let siblings: BTreeSet<String> = files.iter().map(|f| name(f)).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let me = name(file);
            let code = code_outside_tests(file);
            let mut named = first_segments(&code, "super::");
            named.extend(first_segments(&code, &format!("crate::{top}::")));
            let deps = graph.entry(me.clone()).or_default();
            deps.extend(named.into_iter().filter(|n| siblings.contains(n) && *n != me));
        }
        graphs.insert(top, graph);
    }
    graphs
}

/// A path that leads from some node of `graph` back to itself, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search for a path from each dependency back to the module.
    for (module, deps) in graph {
        for dep in deps {
            let mut stack = vec![vec![module.clone(), dep.clone()]];
            let mut seen = BTreeSet::new();
            while let Some(path) = stack.pop() {
                let last = path.last().unwrap();
                if last == module {
                    return Some(path);
                }
                if !seen.insert(last.clone()) {
                    continue;
                }
                for next in graph.get(last).into_iter().flatten() {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    None
}

#[test]
fn submodules_have_no_import_cycle() {
    let graphs = submodule_graphs();
    // The reading finds the edges it should (so that an empty result means something).
    assert!(graphs["detection"]["scan"].contains("geometry"), "{:?}", graphs["detection"]);
    assert!(graphs["evaluation"]["evaluate"].contains("inference"), "{:?}", graphs["evaluation"]);
    let mut with_cycle = BTreeMap::new();
    with_cycle.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    with_cycle.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&with_cycle).is_some());
    assert_eq!(
        first_segments("use super::{tta::{Tta, x}, batch::y};", "super::"),
        BTreeSet::from(["tta".into(), "batch".into()])
    );
    for (top, graph) in &graphs {
        if let Some(path) = find_cycle(graph) {
            panic!("import cycle in {top}: {}", path.join(" -> "));
        }
    }
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() >= 10 && graph["training"].contains("run"), "the graph was read: {graph:?}");
    if let Some(path) = find_cycle(&graph) {
        panic!("import cycle: {}", path.join(" -> "));
    }
}

#[test]
fn the_library_depends_on_no_front_crate() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> =
        deps.lines().filter_map(|l| l.split('=').next()).map(str::trim).filter(|n| !n.is_empty()).collect();
    assert!(names.contains(&"burn"), "the dependencies were read: {names:?}");
    for front in ["clap", "indicatif", "axum", "pyo3", "tokio", "anyhow"] {
        assert!(!names.contains(&front), "the library depends on {front}");
    }
}

#[test]
fn the_library_prints_nothing() {
    let mut printing = Vec::new();
    for file in rust_files(&src()) {
        for (i, line) in code_outside_tests(&file).lines().enumerate() {
            if ["println!", "eprintln!", "print!(", "eprint!("].iter().any(|m| line.contains(m)) {
                printing.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(printing.is_empty(), "the library prints (use ferkit::events):\n{}", printing.join("\n"));
}
