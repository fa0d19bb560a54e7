//! The house rules the compiler does not check: imports in `src/lib` flow one way (a module
//! uses only modules of a lower layer), daemons never use each other, and the small crates
//! (backup, base, cgroup, child, keeper, log-line, procman) stay free of gRPC, TLS and the database. Read from the source, so a change that breaks a
//! rule fails here with the file and the import named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of `src/lib` and its layer: a module may use modules of lower layers
/// only. 0 is the ground floor (no `crate::` imports but its own layer's leaves), 4 the daemons.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("errors", 0),
    ("diagnosis", 0),
    ("retry", 0),
    ("sync", 0),
    ("metrics", 0),
    ("telemetry", 0),
    ("proto", 0),
    ("wire", 0),
    ("slots", 0),
    ("secret", 1),
    ("lifecycle", 1),
    ("http", 1),
    ("logstore", 1),
    ("views", 1),
    ("db", 1),
    ("bus", 2),
    ("health", 2),
    ("grpc", 2),
    ("procman", 2),
    ("auth", 3),
    ("keeper", 3),
    ("api", 4),
    ("processor", 4),
    ("logs", 4),
    ("status", 4),
    ("host", 4),
    ("notify", 4),
    ("web", 4),
    ("cli", 4),
];

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

/// The top-level module a file of `src/lib` belongs to.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The `crate::x` modules a file names, with the line, outside its `#[cfg(test)]` tail (test
/// code may use the testkit and anything else).
fn imports(text: &str) -> Vec<(String, usize)> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((name, n + 1));
        }
    }
    found
}

#[test]
fn imports_in_the_library_flow_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib");
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let module = module_of(&root, file);
        if module == "lib" || module == "testkit" {
            continue;
        }
        let Some(&own) = layers.get(module.as_str()) else {
            broken.push(format!(
                "{}: module {module} has no layer in tests/layout.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (used, line) in imports(&text) {
            if used == module || used == "testkit" {
                continue;
            }
            match layers.get(used.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(&theirs) => broken.push(format!(
                    "{}:{line}: {module} (layer {own}) uses {used} (layer {theirs})",
                    file.display()
                )),
                None => broken.push(format!("{}:{line}: unknown module {used}", file.display())),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_small_crates_need_no_grpc_tls_or_database() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    for member in [
        "backup", "base", "cgroup", "child", "keeper", "log-line", "procman",
    ] {
        let manifest = std::fs::read_to_string(crates.join(member).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
        for heavy in [
            "grpcio",
            "openssl",
            "native-tls",
            "postgres",
            "amiquip",
            "manman =",
        ] {
            assert!(!deps.contains(heavy), "crates/{member} depends on {heavy}");
        }
    }
}
