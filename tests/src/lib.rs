//! Workspace-level tests live in `tests/tests/`. This crate has no library code.
