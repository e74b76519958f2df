//! The library's layout rules, checked on its source: no import cycle between the top-level
//! modules of `src/` (each module is a layer: it uses only modules below it), no command-line,
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

#[test]
fn top_level_modules_have_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() >= 10 && graph["training"].contains("run"), "the graph was read: {graph:?}");
    // Depth-first search for a path from each dependency back to the module.
    for (module, deps) in &graph {
        for dep in deps {
            let mut stack = vec![vec![module.clone(), dep.clone()]];
            let mut seen = BTreeSet::new();
            while let Some(path) = stack.pop() {
                let last = path.last().unwrap();
                assert!(last != module || path.len() == 1, "import cycle: {}", path.join(" -> "));
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
