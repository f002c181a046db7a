//! Durations in the configuration are `coffer_core::duration`'s exact durations (`30s`, `10min`,
//! `2h`, `1d`, `1w`, `1h30min`); this re-export keeps the old path for callers not yet moved.

pub use coffer_core::duration::{format, parse};
