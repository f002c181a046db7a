//! Hash maps and sets keyed by blob and pack ids, for the millions of entries a prune holds.

use crate::id::Id;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes an id by its first 8 bytes: blob ids are keyed hashes, uniform and not chosen by
/// anyone without the key, so this is as good as SipHash and much faster.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if bytes.len() >= 8 {
            self.0 ^= u64::from_le_bytes(bytes[..8].try_into().unwrap());
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// A map keyed by id, hashed with [`IdHasher`].
pub(super) type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;
/// A set of ids, hashed with [`IdHasher`].
pub(super) type IdSet = HashSet<Id, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_hasher_spreads_ids() {
        let mut m: IdMap<u32> = IdMap::default();
        for i in 0..1000u32 {
            m.insert(Id::sha256(&i.to_le_bytes()), i);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m[&Id::sha256(&7u32.to_le_bytes())], 7);
    }
}
