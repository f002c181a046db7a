//! Settings every client of a repository shares: its retention policy and the mirror
//! repositories each backup is copied to. They live in the repository (`settings/<id>`, sealed
//! like snapshots; docs/format.md section 13), so every machine that backs up to it applies the
//! same policy without a config file of its own.
//!
//! Objects are never edited: a change writes a new settings object whose `sequence` is one above
//! the newest, then removes the older ones. Readers take the object with the highest
//! `(sequence, time, id)`, so a reader racing a writer sees either the old or the new settings,
//! and two writers racing each other leave one winner that every reader agrees on.

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repository::{hostname, Opened, Repository};
use crate::retention::{Policy, Span};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A repository that every backup is copied to after it is saved (the 3-2-1 rule).
///
/// Security rule: a mirror never stores a secret. Its URL carries none (storage URLs refuse
/// credentials), its options are the non-secret storage options, and its password is named
/// by a file or command on the client, or is the password of this repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The mirror repository's URL (no credentials).
    pub url: String,
    /// A file on the client whose first line is the mirror's password (`None` with no
    /// `password_command` either: the password that opened this repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// A command (run with `sh -c`) printing the mirror's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_command: Option<String>,
    /// Non-secret storage options for the mirror (`s3.endpoint`, `s3.region`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The shared settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The retention policy `forget` applies when given no policy flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Policy>,
    /// The IANA time zone in which that policy counts days, weeks, ... (`None`: each client's
    /// own zone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Repositories each new snapshot is copied to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
}

impl Settings {
    /// Checks what a reader would otherwise trip over later: a valid policy, one entry per
    /// mirror URL.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.retention {
            p.validate()?;
        }
        if let Some(tz) = &self.timezone {
            crate::retention::parse_timezone(tz)?;
        }
        for (i, m) in self.mirrors.iter().enumerate() {
            if self.mirrors[..i].iter().any(|o| o.url == m.url) {
                return Err(Error::invalid(format!(
                    "the mirror {} is listed twice",
                    m.url
                )));
            }
            if m.password_file.is_some() && m.password_command.is_some() {
                return Err(Error::invalid(format!(
                    "the mirror {} names both a password file and a password command: keep one",
                    m.url
                )));
            }
        }
        Ok(())
    }
}

/// One stored settings object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SettingsFile {
    /// One above the sequence of the settings this replaced (the first is 1).
    sequence: u64,
    /// When it was written.
    time: DateTime<Utc>,
    /// The host that wrote it.
    hostname: String,
    /// The settings.
    settings: Settings,
}

/// Reads a stored settings object. Versions before the `mo` unit wrote a policy's months as a
/// bare `m` (`"keep_within": "1y2m"`), which a span written by a person may no longer use: such
/// spans are rewritten before the policy is read ([`Span::parse_stored`]).
fn parse_settings_file(plain: &[u8]) -> serde_json::Result<SettingsFile> {
    let mut v: serde_json::Value = serde_json::from_slice(plain)?;
    let policy = v
        .get_mut("settings")
        .and_then(|s| s.get_mut("retention"))
        .and_then(|r| r.as_object_mut());
    for (key, value) in policy.into_iter().flatten() {
        if !key.starts_with("keep_within") {
            continue;
        }
        if let Some(span) = value.as_str().and_then(|s| Span::parse_stored(s).ok()) {
            *value = serde_json::Value::String(span.to_string());
        }
    }
    serde_json::from_value(v)
}

/// The settings in force and where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSettings {
    /// The settings (the defaults when none were ever stored).
    pub settings: Settings,
    /// Their sequence number (0: never stored).
    pub sequence: u64,
    /// When they were written, and by which host (`None`: never stored).
    pub written: Option<(DateTime<Utc>, String)>,
}

impl<S: Opened> Repository<S> {
    /// The settings in force: the newest settings object, or the defaults if there is none.
    /// An object that cannot be opened is an error, never skipped (it might be the newest).
    pub async fn load_settings(&self) -> Result<StoredSettings> {
        Ok(self.newest_settings().await?.0)
    }

    /// The newest settings plus the ids of every settings object seen.
    async fn newest_settings(&self) -> Result<(StoredSettings, Vec<Id>)> {
        let keys = self.state.keyring();
        let mut best: Option<(SettingsFile, Id)> = None;
        let mut seen = Vec::new();
        for (id, _) in self.backend().list(FileType::Settings).await? {
            let data = match self.backend().read(FileType::Settings, &id).await {
                Ok(d) => d,
                // Removed by a writer after we listed it: it was superseded.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let plain = keys.open(FileType::Settings, &id, &data)?;
            let file = parse_settings_file(&plain).map_err(|e| {
                Error::corrupt(format!("settings {} do not parse: {e}", id.short()))
            })?;
            seen.push(id);
            let newer = best
                .as_ref()
                .is_none_or(|(b, bid)| (file.sequence, file.time, id) > (b.sequence, b.time, *bid));
            if newer {
                best = Some((file, id));
            }
        }
        let stored = match best {
            Some((f, _)) => StoredSettings {
                settings: f.settings,
                sequence: f.sequence,
                written: Some((f.time, f.hostname)),
            },
            None => StoredSettings::default(),
        };
        Ok((stored, seen))
    }

    /// Stores `settings` as the new settings of the repository and removes the objects it
    /// replaces (a removal that fails leaves an older object behind, which readers ignore).
    /// Returns the new sequence number.
    pub async fn save_settings(&self, settings: &Settings) -> Result<u64> {
        settings.validate()?;
        let (current, old) = self.newest_settings().await?;
        let file = SettingsFile {
            sequence: current.sequence + 1,
            time: Utc::now(),
            hostname: hostname(),
            settings: settings.clone(),
        };
        let id = Id::random();
        let plain = serde_json::to_vec(&file).expect("settings serialize");
        let sealed = self.state.keyring().seal(FileType::Settings, &id, &plain);
        self.backend()
            .write(FileType::Settings, &id, Bytes::from(sealed))
            .await?;
        for old in old {
            self.backend().remove(FileType::Settings, &old).await.ok();
        }
        Ok(file.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use crate::repository::InitOptions;
    use std::sync::Arc;

    async fn repo() -> Repository<crate::Open> {
        let backend = Arc::new(MemoryBackend::new());
        let opts = InitOptions {
            kdf: crate::keyfile::KdfParams {
                m_cost: 64,
                t_cost: 1,
                p_cost: 1,
            },
            ..Default::default()
        };
        Repository::new(backend).init(b"pw", opts).await.unwrap()
    }

    fn policy(daily: i32) -> Policy {
        Policy {
            keep_daily: Some(daily),
            min_keep: Some(2),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn defaults_then_the_newest_wins_and_old_objects_go() {
        let repo = repo().await;
        let none = repo.load_settings().await.unwrap();
        assert_eq!(none, StoredSettings::default());

        let first = Settings {
            retention: Some(policy(7)),
            ..Default::default()
        };
        assert_eq!(repo.save_settings(&first).await.unwrap(), 1);
        let second = Settings {
            retention: Some(policy(14)),
            timezone: Some("Europe/Berlin".into()),
            mirrors: vec![Mirror {
                url: "s3://b/p".into(),
                password_file: Some("/etc/m.pass".into()),
                password_command: None,
                options: BTreeMap::from([("s3.region".into(), "eu-west-1".into())]),
            }],
        };
        assert_eq!(repo.save_settings(&second).await.unwrap(), 2);
        let got = repo.load_settings().await.unwrap();
        assert_eq!(got.settings, second);
        assert_eq!(got.sequence, 2);
        assert_eq!(
            repo.backend().list(FileType::Settings).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_left_over_older_object_is_ignored() {
        let repo = repo().await;
        let old = Settings {
            retention: Some(policy(3)),
            ..Default::default()
        };
        repo.save_settings(&old).await.unwrap();
        let kept = repo.backend().list(FileType::Settings).await.unwrap();
        let old_bytes = repo
            .backend()
            .read(FileType::Settings, &kept[0].0)
            .await
            .unwrap();
        let new = Settings {
            retention: Some(policy(9)),
            ..Default::default()
        };
        repo.save_settings(&new).await.unwrap();
        // As if the removal of the superseded object had failed.
        repo.backend()
            .write(FileType::Settings, &kept[0].0, old_bytes)
            .await
            .unwrap();
        assert_eq!(repo.load_settings().await.unwrap().settings, new);
    }

    #[tokio::test]
    async fn a_renamed_or_damaged_object_is_an_error_not_skipped() {
        let repo = repo().await;
        repo.save_settings(&Settings {
            retention: Some(policy(3)),
            ..Default::default()
        })
        .await
        .unwrap();
        let (id, _) = repo.backend().list(FileType::Settings).await.unwrap()[0];
        let bytes = repo.backend().read(FileType::Settings, &id).await.unwrap();
        repo.backend()
            .remove(FileType::Settings, &id)
            .await
            .unwrap();
        repo.backend()
            .write(FileType::Settings, &Id::random(), bytes)
            .await
            .unwrap();
        let err = repo.load_settings().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    }

    #[tokio::test]
    async fn months_stored_as_a_bare_m_by_earlier_versions_are_read() {
        let repo = repo().await;
        let plain = br#"{"sequence":1,"time":"2026-11-22T07:10:00Z","hostname":"db1",
            "settings":{"retention":{"keep_within":"1y2m","keep_within_weekly":"3m",
            "keep_within_daily":"2w3d4h","keep_daily":7}}}"#;
        let id = Id::random();
        let sealed = repo.state.keyring().seal(FileType::Settings, &id, plain);
        repo.backend()
            .write(FileType::Settings, &id, Bytes::from(sealed))
            .await
            .unwrap();
        let got = repo.load_settings().await.unwrap().settings;
        let p = got.retention.expect("the policy");
        assert_eq!(p.keep_within, Some("1y2mo".parse().unwrap()));
        assert_eq!(p.keep_within_weekly, Some("3mo".parse().unwrap()));
        assert_eq!(p.keep_within_daily, Some("2w3d4h".parse().unwrap()));
        assert_eq!(p.keep_daily, Some(7));
        // What a person writes is not rewritten: a bare `m` there stays an error.
        let typed = serde_json::from_str::<Policy>(r#"{"keep_within":"2m"}"#).unwrap_err();
        assert!(
            typed.to_string().contains("write 2mo for months"),
            "{typed}"
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        let dup = Mirror {
            url: "/m".into(),
            password_file: None,
            password_command: None,
            options: BTreeMap::new(),
        };
        let s = Settings {
            mirrors: vec![dup.clone(), dup],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("twice"));
        let s = Settings {
            timezone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }
}
