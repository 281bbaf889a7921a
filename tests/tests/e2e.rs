//! Cross-crate end-to-end scenarios against the real servers that `cargo xtask test`
//! starts on loopback. Each scenario uses its own bucket or path, so they can run in
//! parallel and against a server other runs share.

mod evidence_s3;
