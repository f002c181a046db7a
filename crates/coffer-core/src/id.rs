//! 32-byte identifiers: blob ids (keyed BLAKE3), pack and index ids (SHA-256 of the object),
//! snapshot and key ids (random).

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest;
use std::fmt;

/// A 32-byte identifier, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The all-zero id (used where a file type has a single object, such as `config`).
    pub const ZERO: Id = Id([0; 32]);

    /// A fresh random id (snapshot, key and lock ids).
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        rand::fill(&mut b);
        Id(b)
    }

    /// The SHA-256 of `data` (pack and index file ids: the name proves the content).
    pub fn sha256(data: &[u8]) -> Id {
        Id(sha2::Sha256::digest(data).into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Id> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| Error::invalid(format!("{s:?} is not a 64-digit hex id")))?;
        Ok(Id(b))
    }

    /// The full 64-digit hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown in listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::random();
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!(Id::from_hex("abc").is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
    }
}
