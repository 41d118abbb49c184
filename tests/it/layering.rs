//! The crate's layers point one way. Each top-level module of `src/` may use only the modules
//! listed for it here; a `use crate::x` (or `crate::x::...` in code) outside that list fails.
//! The engine (`loadgen`) and the simulator (`sim`) also stay free of Kubernetes, the command
//! line and progress bars.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module -> the modules it may use (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("api", &[]),
    ("contract", &["api"]),
    ("sim", &[]),
    ("loadgen", &["api", "contract"]),
    ("prom", &["api", "contract"]),
    ("scrape", &["api", "contract", "loadgen"]),
    ("render", &["api", "contract"]),
    ("analysis", &["api", "contract"]),
    ("report", &["api", "contract", "analysis"]),
    (
        "controller",
        &["api", "contract", "render", "analysis", "prom"],
    ),
    (
        "cli",
        &[
            "api", "contract", "loadgen", "sim", "prom", "render", "analysis", "report", "scrape",
        ],
    ),
];

/// External crates a module must not use.
const FORBIDDEN_CRATES: &[(&str, &[&str])] = &[
    (
        "loadgen",
        &["kube", "k8s_openapi", "clap", "indicatif", "plotters"],
    ),
    ("sim", &["kube", "k8s_openapi", "indicatif", "plotters"]),
    (
        "contract",
        &["kube", "clap", "indicatif", "reqwest", "hyper", "tokio"],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines of a file: comments and doc comments dropped.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let code = l.split("//").next().unwrap_or("");
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

/// Every `crate::NAME` and `EXTERNAL::` path a module's files mention, with where.
fn uses(module: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut files = Vec::new();
    rust_files(&src().join(module), &mut files);
    assert!(!files.is_empty(), "src/{module} has no Rust files");
    let mut internal = BTreeMap::new();
    let mut external = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, code) in code_lines(&text) {
            let at = || format!("{}:{line}", file.display());
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                let name: String = rest[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                internal.entry(name).or_insert_with(at);
                rest = &rest[i + 7..];
            }
            let trimmed = code.trim_start();
            for prefix in ["use ", "pub use "] {
                if let Some(path) = trimmed.strip_prefix(prefix) {
                    let name: String = path
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    external.entry(name).or_insert_with(at);
                }
            }
            for (_, crates) in FORBIDDEN_CRATES {
                for c in *crates {
                    if code.contains(&format!("{c}::")) {
                        external.entry(c.to_string()).or_insert_with(at);
                    }
                }
            }
        }
    }
    (internal, external)
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let modules: BTreeSet<String> = std::fs::read_dir(src())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.is_dir()
                .then(|| p.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    let listed: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        modules, listed,
        "every top-level module of src/ needs an entry in ALLOWED"
    );
    let mut wrong = Vec::new();
    for (module, allowed) in ALLOWED {
        let (internal, _) = uses(module);
        for (used, at) in internal {
            if used != *module && !allowed.contains(&used.as_str()) {
                wrong.push(format!("{module} uses {used} ({at})"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let graph: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // Depth-first search for a cycle in the allowed graph itself.
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            return Some(path[i..].to_vec());
        }
        path.push(n);
        for next in graph.get(n).copied().unwrap_or_default() {
            if let Some(cycle) = visit(next, graph, path) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    for m in graph.keys() {
        assert_eq!(visit(m, &graph, &mut Vec::new()), None, "cycle from {m}");
    }
}

#[test]
fn engine_and_simulator_know_nothing_of_kubernetes_or_the_command_line() {
    let mut wrong = Vec::new();
    for (module, crates) in FORBIDDEN_CRATES {
        let (_, external) = uses(module);
        for c in *crates {
            if let Some(at) = external.get(*c) {
                wrong.push(format!("{module} uses {c} ({at})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_a_forbidden_use() {
    let text = "use crate::sim::SimHandle; // fine in a comment: crate::kube\n/// crate::render\n";
    let found: Vec<usize> = code_lines(text).map(|(l, _)| l).collect();
    assert_eq!(found, [1], "doc comments are not code");
}

#[test]
fn one_rust_version_for_cargo_and_the_image() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml sets rust-version")
        .trim_matches('"');
    let docker = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let image = docker
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("Dockerfile has ARG RUST_VERSION=");
    assert_eq!(
        rust_version, image,
        "Cargo.toml rust-version and the Dockerfile's RUST_VERSION differ"
    );
}
