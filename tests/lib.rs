//! Cross-crate end-to-end tests live in this package's `tests/` directory; the library
//! itself is empty and only exists so that the package is a workspace member.
