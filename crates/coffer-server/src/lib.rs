//! Coffer's daemon: the job scheduler, its TOML configuration and the run catalog (placeholder
//! until the scheduler lands).
