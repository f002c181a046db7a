//! The repository `config` object: format version and settings every client must share. It is
//! stored in clear (so its settings can be read without the password) and authenticated by the
//! master key (so nobody can, for example, switch encryption off).
//!
//! Layout: one JSON line, then `mac:` and the hex keyed-BLAKE3 MAC of that line's bytes.

use crate::chunker::ChunkerParams;
use crate::compression::Compression;
use crate::crypto::{Encryption, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The settings in `config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version.
    pub format_version: u32,
    /// The repository's random id.
    pub id: Id,
    /// Compression for new blobs, e.g. `zstd:3`.
    pub compression: String,
    /// AEAD, e.g. `aes256-gcm`.
    pub encryption: String,
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// When `init` ran.
    pub created: DateTime<Utc>,
}

impl RepoConfig {
    /// The parsed compression setting.
    pub fn compression(&self) -> Result<Compression> {
        self.compression.parse()
    }
    /// The parsed encryption setting.
    pub fn encryption(&self) -> Result<Encryption> {
        self.encryption.parse()
    }

    /// Serializes and authenticates.
    pub fn to_bytes(&self, key: &MasterKey) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("config serializes");
        let mut out = body.clone();
        out.extend_from_slice(b"\nmac:");
        out.extend_from_slice(hex::encode(key.config_mac(&body)).as_bytes());
        out.push(b'\n');
        out
    }

    /// Parses without checking the MAC (before the key is known).
    pub fn parse_unverified(data: &[u8]) -> Result<RepoConfig> {
        let body = data.split(|b| *b == b'\n').next().unwrap_or_default();
        let cfg: RepoConfig = serde_json::from_slice(body).map_err(|e| {
            Error::corrupt(format!("the repository's config object is damaged ({e}); restore it from a copy of the repository"))
        })?;
        if cfg.format_version > FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the repository has format version {}, this coffer reads up to {FORMAT_VERSION}: upgrade coffer",
                    cfg.format_version
                ),
            ));
        }
        cfg.compression()?;
        cfg.encryption()?;
        Ok(cfg)
    }

    /// Checks the MAC with the master key.
    pub fn verify(data: &[u8], key: &MasterKey) -> Result<()> {
        let text = std::str::from_utf8(data).map_err(|_| Error::corrupt("config is not text"))?;
        let mut lines = text.lines();
        let body = lines.next().unwrap_or_default();
        let mac = lines
            .next()
            .and_then(|l| l.strip_prefix("mac:"))
            .unwrap_or_default();
        if hex::encode(key.config_mac(body.as_bytes())) != mac {
            return Err(Error::corrupt(
                "the repository's config object fails authentication: it was altered or damaged",
            ));
        }
        Ok(())
    }
}
