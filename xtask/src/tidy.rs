//! Repository hygiene checks that clippy cannot express, in the spirit of
//! rust-analyzer's `xtask/src/tidy.rs`: module docs on every file, thin
//! binaries, no placeholder macros in shipped code, no unexplained `#[ignore]`.
//!
//! Each check works on a path and the file's text so it can be unit-tested on
//! small in-memory inputs.

use std::fs;
use std::path::{Path, PathBuf};

/// Directories whose `.rs` files are checked, relative to the workspace root.
pub const ROOTS: &[&str] = &["crates", "bins", "xtask", "tests"];

/// `main.rs` of a binary must stay below this many lines: logic belongs in libraries.
pub const MAX_MAIN_LINES: usize = 150;

// Built with concat! so that this file does not trip its own checks.
const TODO: &str = concat!("todo", "!(");
const UNIMPLEMENTED: &str = concat!("unimplemented", "!(");
const BARE_IGNORE: &str = concat!("#[", "ignore]");

/// One finding, printed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path relative to the workspace root, `/`-separated.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// True for `bins/<name>/src/main.rs`.
fn is_bin_main(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["bins", _, "src", "main.rs"])
}

/// Whole files that are test code: integration tests, the e2e test crate, `tests.rs` modules.
fn is_test_file(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.first() == Some(&"tests")
        || parts[..parts.len().saturating_sub(1)].contains(&"tests")
        || parts.last() == Some(&"tests.rs")
}

/// Checks one file's text; `path` is relative to the workspace root.
pub fn check_file(path: &str, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut push = |line: usize, message: String| {
        out.push(Violation {
            path: path.to_owned(),
            line,
            message,
        });
    };

    let first = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
    match first {
        Some((_, l)) if l.trim_start().starts_with("//!") => {}
        Some((i, _)) => push(i + 1, "file must start with a `//!` module doc".into()),
        None => push(1, "empty file: add a `//!` module doc".into()),
    }

    let lines = text.lines().count();
    if is_bin_main(path) && lines >= MAX_MAIN_LINES {
        push(
            MAX_MAIN_LINES,
            format!(
                "main.rs has {lines} lines (limit {}): move logic into a library",
                MAX_MAIN_LINES - 1
            ),
        );
    }

    let mut in_tests = is_test_file(path);
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            // Test modules go at the end of a file: everything after is test code.
            in_tests = true;
        }
        if !in_tests {
            for mac in [TODO, UNIMPLEMENTED] {
                if line.contains(mac) {
                    push(
                        i + 1,
                        format!("`{mac}..)` outside tests: finish the code or return an error"),
                    );
                }
            }
        }
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed.contains(BARE_IGNORE) {
            push(
                i + 1,
                format!(
                    "bare `{BARE_IGNORE}`: say why and how to run it, `#[ignore = \"reason\"]`"
                ),
            );
        }
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            collect_rs(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Runs every check over the workspace's source files.
pub fn check_workspace(root: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    for dir in ROOTS {
        collect_rs(&root.join(dir), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        match fs::read_to_string(&file) {
            Ok(text) => out.extend(check_file(&rel, &text)),
            Err(e) => out.push(Violation {
                path: rel,
                line: 1,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the checks and returns `line: message-prefix` pairs to compare.
    fn check(path: &str, text: &str, expect: &[(usize, &str)]) {
        let got = check_file(path, text);
        let got: Vec<(usize, String)> = got.into_iter().map(|v| (v.line, v.message)).collect();
        assert_eq!(got.len(), expect.len(), "{path}: {got:?}");
        for ((gl, gm), (el, em)) in got.iter().zip(expect) {
            assert_eq!(gl, el, "{got:?}");
            assert!(gm.starts_with(em), "{gm:?} should start with {em:?}");
        }
    }

    #[test]
    fn module_doc_required() {
        check("crates/a/src/lib.rs", "//! Doc.\nfn a() {}\n", &[]);
        check(
            "crates/a/src/lib.rs",
            "\n\n//! Doc after blank lines.\n",
            &[],
        );
        check(
            "crates/a/src/lib.rs",
            "/// item doc\nfn a() {}\n",
            &[(1, "file must start")],
        );
        check(
            "crates/a/src/lib.rs",
            "\nuse x;\n",
            &[(2, "file must start")],
        );
        check("crates/a/src/lib.rs", "", &[(1, "empty file")]);
    }

    #[test]
    fn bin_main_length_limit() {
        let short = format!("//! Main.\n{}", "x();\n".repeat(MAX_MAIN_LINES - 2));
        check("bins/sre/src/main.rs", &short, &[]);
        let long = format!("//! Main.\n{}", "x();\n".repeat(MAX_MAIN_LINES - 1));
        check(
            "bins/sre/src/main.rs",
            &long,
            &[(MAX_MAIN_LINES, "main.rs has 150 lines")],
        );
        // Only binaries' main.rs are limited.
        check("crates/a/src/main.rs", &long, &[]);
        check("bins/sre/src/cli.rs", &long, &[]);
    }

    #[test]
    fn placeholders_outside_tests() {
        let todo = format!("//! Doc.\nfn a() {{ {TODO}) }}\n");
        check(
            "crates/a/src/lib.rs",
            &todo,
            &[(2, "`todo!(..)` outside tests")],
        );
        let unimpl = format!("//! Doc.\nfn a() {{ {UNIMPLEMENTED}\"x\") }}\n");
        check(
            "bins/b/src/run.rs",
            &unimpl,
            &[(2, "`unimplemented!(..)` outside tests")],
        );
        // In a test module, an integration test, a tests.rs or a comment: fine.
        let in_mod = format!("//! Doc.\n#[cfg(test)]\nmod tests {{ fn a() {{ {TODO}) }} }}\n");
        check("crates/a/src/lib.rs", &in_mod, &[]);
        check("crates/a/tests/sim.rs", &todo, &[]);
        check("tests/e2e.rs", &todo, &[]);
        check("crates/a/src/x/tests.rs", &todo, &[]);
        let comment = format!("//! Doc.\n// never write {TODO})\n");
        check("crates/a/src/lib.rs", &comment, &[]);
    }

    #[test]
    fn ignore_needs_a_reason() {
        let bare = format!("//! Doc.\n#[test]\n{BARE_IGNORE}\nfn slow() {{}}\n");
        check("crates/a/tests/contract.rs", &bare, &[(3, "bare `")]);
        let spaced = concat!("//! Doc.\n#[ ", "ignore ]\nfn slow() {}\n");
        check("crates/a/src/lib.rs", spaced, &[(2, "bare `")]);
        let reasoned = "//! Doc.\n#[ignore = \"needs a cluster: KUBECONFIG\"]\nfn slow() {}\n";
        check("crates/a/tests/contract.rs", reasoned, &[]);
    }

    #[test]
    fn test_file_classification() {
        assert!(is_test_file("tests/lib.rs"));
        assert!(is_test_file("crates/a/tests/contract.rs"));
        assert!(is_test_file("crates/a/src/tests.rs"));
        assert!(!is_test_file("crates/a/src/lib.rs"));
        assert!(!is_test_file("crates/tests_util/src/lib.rs"));
        assert!(is_bin_main("bins/sre/src/main.rs"));
        assert!(!is_bin_main("bins/sre/src/bin/main.rs"));
    }

    #[test]
    fn violations_print_as_file_line() {
        let v = Violation {
            path: "crates/a/src/lib.rs".into(),
            line: 3,
            message: "m".into(),
        };
        assert_eq!(v.to_string(), "crates/a/src/lib.rs:3: m");
    }
}
