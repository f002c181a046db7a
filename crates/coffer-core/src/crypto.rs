//! Keys and authenticated encryption.
//!
//! Security rules enforced here (each is restated where it matters):
//! 1. Every object is sealed under a *subkey* derived from the master key and a fresh random
//!    256-bit salt (one salt per pack file and per standalone object), never under the master key.
//! 2. Within one subkey, the nonce is a function of a unique position (the blob's byte offset in
//!    its pack, or a fixed value for an object sealed once), so a nonce never repeats under a key.
//! 3. Associated data binds each blob's type and id, so one blob cannot be swapped for another.
//! 4. Blob ids are BLAKE3 hashes keyed by a key derived from the master key: without the key, an
//!    id says nothing about content.
//! 5. `Encryption::None` still authenticates (keyed BLAKE3 MAC); it only stops hiding content.

use crate::error::{Error, Result};
use crate::id::Id;
use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use std::fmt;
use std::str::FromStr;
use zeroize::{Zeroize, Zeroizing};

/// The AEAD a repository seals its objects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// AES-256 in Galois/Counter mode (the default).
    Aes256Gcm,
    /// AES-128 in Galois/Counter mode.
    Aes128Gcm,
    /// ChaCha20 with Poly1305 (fast without AES instructions).
    ChaCha20Poly1305,
    /// No secrecy: objects are stored in clear, still authenticated by a keyed BLAKE3 MAC.
    None,
}

impl Encryption {
    /// Bytes a sealed object is longer than its plaintext.
    pub fn overhead(self) -> usize {
        match self {
            Encryption::None => 32,
            _ => 16,
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encryption::Aes256Gcm => "aes256-gcm",
            Encryption::Aes128Gcm => "aes128-gcm",
            Encryption::ChaCha20Poly1305 => "chacha20-poly1305",
            Encryption::None => "none",
        })
    }
}

impl FromStr for Encryption {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "aes256-gcm" | "aes-256-gcm" => Encryption::Aes256Gcm,
            "aes128-gcm" | "aes-128-gcm" => Encryption::Aes128Gcm,
            "chacha20-poly1305" | "chacha20poly1305" => Encryption::ChaCha20Poly1305,
            "none" => Encryption::None,
            _ => {
                return Err(Error::invalid(format!(
                "unknown encryption {s:?}: use aes256-gcm, aes128-gcm, chacha20-poly1305 or none"
            )))
            }
        })
    }
}

/// The repository's master secret, from which every working key is derived. Zeroed on drop.
#[derive(Clone)]
pub struct MasterKey {
    secret: Zeroizing<[u8; 64]>,
    id_key: Zeroizing<[u8; 32]>,
    data_key: Zeroizing<[u8; 32]>,
    mac_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)") // Security: never print key material.
    }
}

impl MasterKey {
    /// A fresh random master key (at `init`).
    pub fn generate() -> Self {
        let mut s = [0u8; 64];
        rand::fill(&mut s);
        let k = Self::from_secret(&s);
        s.zeroize();
        k
    }

    /// Rebuilds the key from its 64-byte secret (as unwrapped from a key file).
    pub fn from_secret(secret: &[u8; 64]) -> Self {
        MasterKey {
            secret: Zeroizing::new(*secret),
            id_key: Zeroizing::new(blake3::derive_key("coffer 2026-11 blob id", secret)),
            data_key: Zeroizing::new(blake3::derive_key("coffer 2026-11 data encryption", secret)),
            mac_key: Zeroizing::new(blake3::derive_key("coffer 2026-11 config mac", secret)),
        }
    }

    /// The 64-byte secret, for wrapping into a key file.
    pub fn secret(&self) -> &[u8; 64] {
        &self.secret
    }

    /// The id of a blob: BLAKE3 keyed by the id key (rule 4).
    pub fn blob_id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// A MAC over the repository config, so it cannot be altered (say, to `encryption = none`).
    pub fn config_mac(&self, body: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.mac_key, body).as_bytes()
    }

    /// The cipher for one pack or object, from its random salt (rule 1).
    pub fn cipher(&self, alg: Encryption, salt: &[u8; 32]) -> Cipher {
        let mut h = blake3::Hasher::new_keyed(&self.data_key);
        h.update(b"coffer subkey v1");
        h.update(salt);
        Cipher {
            alg,
            key: Zeroizing::new(*h.finalize().as_bytes()),
        }
    }
}

/// An AEAD bound to one subkey. Each instance seals exactly one pack or one object.
pub struct Cipher {
    alg: Encryption,
    key: Zeroizing<[u8; 32]>,
}

fn none_mac(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&(aad.len() as u64).to_le_bytes());
    h.update(aad);
    h.update(nonce);
    h.update(data);
    *h.finalize().as_bytes()
}

impl Cipher {
    /// The algorithm.
    pub fn alg(&self) -> Encryption {
        self.alg
    }

    /// Seals `plaintext` with `nonce` and associated data `aad`; returns ciphertext plus tag.
    /// Callers guarantee the nonce is unique under this cipher (rule 2).
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + 32);
        out.extend_from_slice(plaintext);
        self.seal_append(nonce, aad, &mut out, 0);
        out
    }

    /// Seals `buf[start..]` in place and appends the tag: `buf[start..]` then holds the
    /// ciphertext and tag ([`Cipher::seal`] for that plaintext), without a buffer of its own.
    /// Callers guarantee the nonce is unique under this cipher (rule 2).
    pub fn seal_append(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>, start: usize) {
        let n = nonce.into();
        let msg = &mut buf[start..];
        let tag = match self.alg {
            Encryption::Aes256Gcm => Aes256Gcm::new((&*self.key).into())
                .encrypt_inout_detached(n, aad, msg.into())
                .map(|t| t.to_vec()),
            Encryption::Aes128Gcm => {
                let k: &[u8; 16] = self.key[..16].try_into().expect("16 bytes");
                Aes128Gcm::new(k.into())
                    .encrypt_inout_detached(n, aad, msg.into())
                    .map(|t| t.to_vec())
            }
            Encryption::ChaCha20Poly1305 => ChaCha20Poly1305::new((&*self.key).into())
                .encrypt_inout_detached(n, aad, msg.into())
                .map(|t| t.to_vec()),
            Encryption::None => Ok(none_mac(&self.key, nonce, aad, msg).to_vec()),
        };
        let tag = tag.expect("AEAD encryption of an in-memory buffer cannot fail");
        buf.extend_from_slice(&tag);
    }

    /// Opens what [`Cipher::seal`] produced; fails if any byte, the nonce or the aad differ.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let payload = Payload { msg: sealed, aad };
        let n = nonce.into();
        let out = match self.alg {
            Encryption::Aes256Gcm => Aes256Gcm::new((&*self.key).into()).decrypt(n, payload),
            Encryption::Aes128Gcm => {
                let k: &[u8; 16] = self.key[..16].try_into().expect("16 bytes");
                Aes128Gcm::new(k.into()).decrypt(n, payload)
            }
            Encryption::ChaCha20Poly1305 => {
                ChaCha20Poly1305::new((&*self.key).into()).decrypt(n, payload)
            }
            Encryption::None => {
                if sealed.len() < 32 {
                    return Err(Error::corrupt("sealed data is shorter than its MAC"));
                }
                let (data, mac) = sealed.split_at(sealed.len() - 32);
                let want = none_mac(&self.key, nonce, aad, data);
                // Constant-time comparison through blake3's Hash equality.
                if blake3::Hash::from(want)
                    == blake3::Hash::from(<[u8; 32]>::try_from(mac).unwrap())
                {
                    Ok(data.to_vec())
                } else {
                    Err(aes_gcm::aead::Error)
                }
            }
        };
        out.map_err(|_| Error::corrupt("authentication failed (data damaged or tampered with)"))
    }
}

/// Seals a standalone object (index, snapshot, lock): `version(1) | salt(32) | ciphertext`.
/// Rule 1 and 2: the salt is fresh for every object, so the fixed nonce is used once per key.
pub fn seal_object(key: &MasterKey, alg: Encryption, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; 32];
    rand::fill(&mut salt);
    let ct = key.cipher(alg, &salt).seal(&OBJECT_NONCE, aad, plaintext);
    let mut out = Vec::with_capacity(1 + 32 + ct.len());
    out.push(1);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&ct);
    out
}

/// Opens an object sealed by [`seal_object`].
pub fn open_object(key: &MasterKey, alg: Encryption, aad: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    if data.len() < 33 || data[0] != 1 {
        return Err(Error::corrupt("not a sealed object of format version 1"));
    }
    let salt: [u8; 32] = data[1..33].try_into().unwrap();
    key.cipher(alg, &salt).open(&OBJECT_NONCE, aad, &data[33..])
}

/// The nonce of standalone objects: each has its own subkey, so it is used once per key.
const OBJECT_NONCE: [u8; 12] = [0xfe; 12];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Encryption; 4] = [
        Encryption::Aes256Gcm,
        Encryption::Aes128Gcm,
        Encryption::ChaCha20Poly1305,
        Encryption::None,
    ];

    /// Sealing as the format defines it, with each crate's one-shot encryption: ciphertext then
    /// tag; for `none`, the plaintext then its keyed BLAKE3 MAC.
    fn reference_seal(cipher: &Cipher, nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
        let payload = Payload { msg, aad };
        let n = nonce.into();
        let out = match cipher.alg {
            Encryption::Aes256Gcm => Aes256Gcm::new((&*cipher.key).into()).encrypt(n, payload),
            Encryption::Aes128Gcm => {
                let k: &[u8; 16] = cipher.key[..16].try_into().unwrap();
                Aes128Gcm::new(k.into()).encrypt(n, payload)
            }
            Encryption::ChaCha20Poly1305 => {
                ChaCha20Poly1305::new((&*cipher.key).into()).encrypt(n, payload)
            }
            Encryption::None => {
                let mut v = msg.to_vec();
                v.extend_from_slice(&none_mac(&cipher.key, nonce, aad, msg));
                Ok(v)
            }
        };
        out.unwrap()
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), alg in 0usize..4) {
            let key = MasterKey::generate();
            let alg = ALL[alg];
            let sealed = seal_object(&key, alg, b"aad", &data);
            prop_assert_eq!(open_object(&key, alg, b"aad", &sealed).unwrap(), data.clone());
            prop_assert!(open_object(&key, alg, b"other", &sealed).is_err());
            let mut bad = sealed.clone();
            let i = bad.len() - 1;
            bad[i] ^= 1;
            prop_assert!(open_object(&key, alg, b"aad", &bad).is_err());
        }

        /// Sealing in place, after other bytes, gives exactly what the one-shot AEAD encryption
        /// (and `seal`) gives, and opens.
        #[test]
        fn seal_append_is_seal(data in proptest::collection::vec(any::<u8>(), 0..5000), alg in 0usize..4, lead in 0usize..100) {
            let key = MasterKey::generate();
            let cipher = key.cipher(ALL[alg], &[7u8; 32]);
            let nonce = [3u8; 12];
            let mut buf = vec![0xAA; lead];
            buf.extend_from_slice(&data);
            cipher.seal_append(&nonce, b"aad", &mut buf, lead);
            prop_assert!(buf[..lead].iter().all(|b| *b == 0xAA), "bytes before start changed");
            prop_assert_eq!(&buf[lead..], &reference_seal(&cipher, &nonce, b"aad", &data)[..]);
            prop_assert_eq!(&buf[lead..], &cipher.seal(&nonce, b"aad", &data)[..]);
            prop_assert_eq!(cipher.open(&nonce, b"aad", &buf[lead..]).unwrap(), data);
        }
    }

    #[test]
    fn ids_are_keyed() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(
            a.blob_id(b"x"),
            MasterKey::from_secret(a.secret()).blob_id(b"x")
        );
    }

    #[test]
    fn names_parse() {
        for alg in ALL {
            assert_eq!(alg.to_string().parse::<Encryption>().unwrap(), alg);
        }
        assert!("rot13".parse::<Encryption>().is_err());
    }
}
