//! Test helpers shared by Coffer's integration tests: run the `coffer` binary, build and compare
//! tricky file trees, and the storage conformance suite every backend must pass.

pub mod backend_suite;
pub mod cli;
pub mod servers;
pub mod tree;
