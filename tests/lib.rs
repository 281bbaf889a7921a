//! Cross-crate end-to-end tests. The scenarios live in `tests/e2e.rs` (one test binary,
//! one module per scenario) and run against the real servers that `cargo xtask test`
//! starts; the library itself is empty and only makes this package a workspace member.
