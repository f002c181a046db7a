//! The TOML shapes as written, with their spans (for line numbers); [`super::build`] checks them
//! and turns them into [`super::Config`].

use crate::schedule::Frequency;
use coffer_core::retention::Policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub catalog: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub max_concurrent_jobs: Option<Spanned<i64>>,
    pub catch_up_window: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<String>>,
    pub job_timeout: Option<Spanned<String>>,
    pub overdue_margin: Option<Spanned<String>>,
    pub retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    pub repository: BTreeMap<String, Spanned<RawRepository>>,
    #[serde(default)]
    pub job: Vec<Spanned<RawJob>>,
}

/// `retry = { attempts = 3, delay = "1min", max_delay = "30min" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub attempts: Option<i64>,
    pub delay: Option<String>,
    pub max_delay: Option<String>,
}

/// `[repository.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    pub url: Spanned<String>,
    pub password_file: Option<Spanned<String>>,
    pub password_command: Option<Spanned<String>>,
    pub retention: Option<Spanned<RawRetention>>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `day_of_week = "sun"` or `day_of_week = 0`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum DayOfWeek {
    Number(i64),
    Name(String),
}

/// `prune = true` or `prune = "0 4 * * SUN"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPrune {
    Flag(bool),
    Schedule(String),
}

/// `[[job]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub name: Spanned<String>,
    pub source: Spanned<OneOrMany>,
    pub repository: Spanned<String>,
    pub schedule: Option<Spanned<String>>,
    pub frequency: Option<Spanned<Frequency>>,
    pub day_of_week: Option<Spanned<DayOfWeek>>,
    pub day_of_month: Option<Spanned<i64>>,
    pub hour: Option<Spanned<i64>>,
    pub minute: Option<Spanned<i64>>,
    #[serde(rename = "type")]
    pub backup_type: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub host: Option<String>,
    pub retention: Option<Spanned<RawRetention>>,
    pub prune: Option<Spanned<RawPrune>>,
    pub verify: Option<Spanned<String>>,
    pub verify_sample: Option<Spanned<String>>,
    #[serde(default)]
    pub mirrors: Vec<Spanned<String>>,
    pub overdue_margin: Option<Spanned<String>>,
}

/// A retention policy table, or a string: `"repository"` names the policy stored in the
/// repository itself (`coffer config set-retention`).
#[derive(Debug)]
// Lives only while the file is checked.
#[allow(clippy::large_enum_variant)]
pub(crate) enum RawRetention {
    /// A policy table.
    Policy(Policy),
    /// A string (only `"repository"` is valid; build reports anything else).
    Named(String),
}

impl<'de> Deserialize<'de> for RawRetention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a value, so a policy's own error (an unknown key, a bad span) is kept.
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(RawRetention::Named(s)),
            other => Policy::deserialize(other)
                .map(RawRetention::Policy)
                .map_err(serde::de::Error::custom),
        }
    }
}
