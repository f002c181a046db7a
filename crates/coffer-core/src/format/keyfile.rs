//! Key files: the master secret wrapped with AES-256-GCM under a key derived from a password by
//! Argon2id. The KDF parameters live in the key file, so they can be raised later.

use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes. The lanes are
    /// computed on parallel threads, so opening a repository takes less time than with one lane
    /// (`coffer snapshots` 0.07 s instead of 0.12 s on 2 cores), while a guess still costs an
    /// attacker 64 MiB for 3 passes.
    fn default() -> Self {
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

impl std::str::FromStr for KdfParams {
    type Err = Error;
    /// `"m_cost_kib,t_cost,p_cost"`.
    fn from_str(s: &str) -> Result<Self> {
        let v: Vec<u32> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        match v[..] {
            [m_cost, t_cost, p_cost] if m_cost >= 8 * p_cost && t_cost >= 1 && p_cost >= 1 => {
                Ok(KdfParams {
                    m_cost,
                    t_cost,
                    p_cost,
                })
            }
            _ => Err(Error::invalid(format!(
                "KDF parameters {s:?} are not \"m_cost_kib,t_cost,p_cost\""
            ))),
        }
    }
}

/// The KDF section of a key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfSection {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Costs.
    #[serde(flatten)]
    pub params: KdfParams,
    /// Random salt, base64.
    pub salt: String,
}

/// A key file (JSON, stored in clear under `keys/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// Host it was made on.
    pub hostname: String,
    /// User who made it.
    pub username: String,
    /// How the wrapping key derives from the password.
    pub kdf: KdfSection,
    /// Always `aes256-gcm`.
    pub cipher: String,
    /// The wrapping nonce, base64.
    pub nonce: String,
    /// The wrapped 64-byte master secret, base64.
    pub data: String,
}

const WRAP_AAD: &[u8] = b"coffer key file v1";

fn derive(password: &[u8], salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| Error::invalid(format!("bad Argon2id parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, salt, &mut *out)
        .map_err(|e| Error::invalid(format!("Argon2id failed: {e}")))?;
    Ok(out)
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        hostname: &str,
        username: &str,
    ) -> Result<KeyFile> {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let k = derive(password, &salt, params)?;
        let ct = Aes256Gcm::new((&*k).into())
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: master.secret(),
                    aad: WRAP_AAD,
                },
            )
            .expect("in-memory encryption cannot fail");
        Ok(KeyFile {
            version: 1,
            created: Utc::now(),
            hostname: hostname.into(),
            username: username.into(),
            kdf: KdfSection {
                algorithm: "argon2id".into(),
                params,
                salt: B64.encode(salt),
            },
            cipher: "aes256-gcm".into(),
            nonce: B64.encode(nonce),
            data: B64.encode(ct),
        })
    }

    /// Parses a stored key file.
    pub fn parse(data: &[u8]) -> Result<KeyFile> {
        let k: KeyFile = serde_json::from_slice(data)
            .map_err(|e| Error::corrupt(format!("key file does not parse: {e}")))?;
        if k.version != 1 || k.kdf.algorithm != "argon2id" || k.cipher != "aes256-gcm" {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "key file uses an unknown version, KDF or cipher",
            ));
        }
        Ok(k)
    }

    /// Serializes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key file serializes")
    }

    /// Unwraps the master key; `WrongPassword` if the password does not fit.
    pub fn open(&self, password: &[u8]) -> Result<MasterKey> {
        let bad = || Error::corrupt("key file is damaged (bad base64 or lengths)");
        let salt = B64.decode(&self.kdf.salt).map_err(|_| bad())?;
        let nonce: [u8; 12] = B64
            .decode(&self.nonce)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        let ct = B64.decode(&self.data).map_err(|_| bad())?;
        let k = derive(password, &salt, self.kdf.params)?;
        let pt = Zeroizing::new(
            Aes256Gcm::new((&*k).into())
                .decrypt(
                    (&nonce).into(),
                    Payload {
                        msg: &ct,
                        aad: WRAP_AAD,
                    },
                )
                .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password"))?,
        );
        let secret: [u8; 64] = pt.as_slice().try_into().map_err(|_| bad())?;
        Ok(MasterKey::from_secret(&secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::generate();
        let p = KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let k = KeyFile::create(&m, b"pw", p, "h", "u").unwrap();
        let k = KeyFile::parse(&k.to_bytes()).unwrap();
        assert_eq!(k.open(b"pw").unwrap().secret(), m.secret());
        assert_eq!(
            k.open(b"nope").unwrap_err().kind(),
            ErrorKind::WrongPassword
        );
    }

    /// Keys of one lane (made before 2026-12) and of four lanes (the default since) both open;
    /// the lane count is part of the derivation, read from the file.
    #[test]
    fn lanes_are_read_from_the_key_file() {
        let m = MasterKey::generate();
        let lanes = |p_cost| KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost,
        };
        let salt = [7u8; 16];
        assert_ne!(
            *derive(b"pw", &salt, lanes(1)).unwrap(),
            *derive(b"pw", &salt, lanes(4)).unwrap(),
            "the lane count changes the derived key"
        );
        for p_cost in [1, 4] {
            let k = KeyFile::create(&m, b"pw", lanes(p_cost), "h", "u").unwrap();
            let k = KeyFile::parse(&k.to_bytes()).unwrap();
            assert_eq!(k.kdf.params.p_cost, p_cost);
            assert_eq!(k.open(b"pw").unwrap().secret(), m.secret());
        }
        assert_eq!(KdfParams::default().p_cost, 4);
    }
}
