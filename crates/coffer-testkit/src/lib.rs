//! Test helpers shared by Coffer's integration tests: run the `coffer` binary, build and compare
//! tricky file trees, start real servers (storage emulators, databases), and the conformance
//! suites every storage backend and every database source must pass.

pub mod backend_suite;
pub mod cli;
pub mod db_engine;
pub mod db_suite;
pub mod fault_proxy;
pub mod mariadb;
pub mod postgres;
pub mod redis_server;
pub mod server_logs;
pub mod servers;
pub mod small_disk;
pub mod sqlite_fixture;
pub mod tree;
