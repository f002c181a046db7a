//! Coffer's daemon: the job scheduler, its TOML configuration and the run catalog.
//!
//! The pieces, each in its own module:
//!
//! - [`config`]: the TOML file (`coffer.toml`): repositories, jobs and daemon settings, checked
//!   as a whole, every problem reported with its file and line.
//! - [`schedule`]: cron expressions, `@daily` and friends, and the friendly form, turned into
//!   run times in a job's time zone.
//! - [`catalog`]: the run history (SQLite by default, PostgreSQL when daemons share the work),
//!   which also decides which daemon runs a scheduled run.
//! - [`scheduler`]: the loop that runs jobs at their times, with a [`clock::Clock`] that tests
//!   replace, a concurrency limit, catch-up, retries and graceful shutdown.
//! - [`runner`]: the [`runner::JobRunner`] trait that executes one job (the `coffer` command
//!   implements it by running itself).
//! - [`status`]: last runs and overdue jobs, for `coffer status`.
//!
//! This crate knows nothing about the command line.

pub mod catalog;
pub mod clock;
pub mod config;
pub mod duration;
pub mod error;
pub mod retry;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod status;

pub use error::{Error, ErrorKind, Result};
