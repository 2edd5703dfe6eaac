//! The aggregators' key index: an open-addressing hash table whose slots
//! point at key bytes already written into the aggregate, so no key is
//! stored twice and no lookup scans a table. Both key tables share one
//! index; a slot says which table its key belongs to.

use crate::error::{Error, Table};

/// One slot of the key index. `meta == EMPTY` marks a free slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) hash: u32,
    /// Table index, with the top bit set for explicit hash keys.
    pub(crate) meta: u32,
    /// Partition keys: absolute offset of the key bytes. Explicit hash
    /// keys: distance from the key bytes up to `R` (stable across moves).
    pub(crate) pos: u32,
    pub(crate) len: u32,
}

pub(crate) const EMPTY: u32 = u32::MAX;
pub(crate) const EHK_BIT: u32 = 1 << 31;

impl Slot {
    pub(crate) const FREE: Slot = Slot {
        hash: 0,
        meta: EMPTY,
        pos: 0,
        len: 0,
    };
}

/// Storage for the key index: fixed (no heap) or growable.
pub(crate) trait Slots {
    fn slots(&self) -> &[Slot];
    fn slots_mut(&mut self) -> &mut [Slot];
    /// Makes room for `new_pk` more partition keys beyond `pk_used` and
    /// `new_ehk` more explicit hash keys beyond `ehk_used`.
    ///
    /// # Errors
    /// [`Error::KeyCapacity`] naming the table that is full.
    fn reserve(
        &mut self,
        pk_used: usize,
        new_pk: usize,
        ehk_used: usize,
        new_ehk: usize,
    ) -> Result<(), Error>;
}

/// Slots per key of capacity. At most a quarter of the slots are in use,
/// so nearly every key sits in its home slot and a lookup rarely probes a
/// second one (a mispredicted probe costs more than the hashing).
pub(crate) const SLOTS_PER_KEY: usize = 4;

/// Slots per `KEYS` of a fixed index: `KEYS` partition keys and `KEYS`
/// explicit hash keys, `SLOTS_PER_KEY` each.
pub(crate) const SLOTS_PER_TABLE_KEY: usize = 2 * SLOTS_PER_KEY;

/// The fixed index: room for `N` keys of each table.
impl<const N: usize> Slots for [[Slot; SLOTS_PER_TABLE_KEY]; N] {
    fn slots(&self) -> &[Slot] {
        self.as_flattened()
    }
    fn slots_mut(&mut self) -> &mut [Slot] {
        self.as_flattened_mut()
    }
    fn reserve(
        &mut self,
        pk_used: usize,
        new_pk: usize,
        ehk_used: usize,
        new_ehk: usize,
    ) -> Result<(), Error> {
        if pk_used + new_pk > N {
            return Err(Error::KeyCapacity {
                table: Table::PartitionKey,
                capacity: N,
            });
        }
        if ehk_used + new_ehk > N {
            return Err(Error::KeyCapacity {
                table: Table::ExplicitHashKey,
                capacity: N,
            });
        }
        Ok(())
    }
}

#[cfg(feature = "alloc")]
impl Slots for alloc::vec::Vec<Slot> {
    fn slots(&self) -> &[Slot] {
        self
    }
    fn slots_mut(&mut self) -> &mut [Slot] {
        self
    }
    fn reserve(
        &mut self,
        pk_used: usize,
        new_pk: usize,
        ehk_used: usize,
        new_ehk: usize,
    ) -> Result<(), Error> {
        // Grows to keep at most half the slots in use: fewer slots per key
        // than the fixed index, since this one may hold a great many keys.
        let need = pk_used + new_pk + ehk_used + new_ehk;
        if need <= self.len() / 2 {
            return Ok(());
        }
        let mut n = self.len().max(64);
        while need > n / 2 {
            n *= 2;
        }
        let old = core::mem::replace(self, alloc::vec![Slot::FREE; n]);
        for s in old.into_iter().filter(|s| s.meta != EMPTY) {
            insert(self, s);
        }
        Ok(())
    }
}

#[inline]
pub(crate) fn bucket(hash: u32, n: usize) -> usize {
    ((u64::from(hash) * n as u64) >> 32) as usize
}

/// Puts `slot` in the first free slot from its home on. The caller has
/// reserved room, so a free slot exists.
pub(crate) fn insert(slots: &mut [Slot], slot: Slot) {
    let n = slots.len();
    let mut i = bucket(slot.hash, n);
    while slots[i].meta != EMPTY {
        i = if i + 1 == n { 0 } else { i + 1 };
    }
    slots[i] = slot;
}

/// Seed of partition-key hashes.
pub(crate) const SEED_PK: u64 = 0;
/// Seed of explicit-hash-key hashes: the same key in the two tables hashes
/// apart.
pub(crate) const SEED_EHK: u64 = 0x5851_F42D_4C95_7F2D;

/// A fast non-cryptographic hash of key bytes, built on the 64x64->128
/// multiply folded of wyhash. Keys of up to 48 bytes take one multiply:
/// their three 16-byte windows (start, middle, end, which cover the key)
/// are folded together with rotations first. Longer keys take one multiply
/// per 16 bytes. Keys of one table and the other hash apart by `seed`.
/// Lookups compare whole keys, so a collision costs a probe, never a wrong
/// answer.
#[inline]
pub(crate) fn hash_key(key: &[u8], seed: u64) -> u32 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    let n = key.len();
    let mut h = seed ^ P0 ^ (n as u64).wrapping_mul(P1);
    let (a, b) = if n <= 16 {
        if n >= 8 {
            (read8(key, 0), read8(key, n - 8))
        } else if n >= 4 {
            (u64::from(read4(key, 0)), u64::from(read4(key, n - 4)))
        } else if n > 0 {
            (
                u64::from(key[0]) << 16 | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]),
                0,
            )
        } else {
            (0, 0)
        }
    } else if n <= 48 {
        let m = n / 2 - 8;
        let lo = read8(key, 0) ^ read8(key, m).rotate_left(21) ^ read8(key, n - 16).rotate_left(42);
        let hi = read8(key, 8) ^ read8(key, m + 8).rotate_left(21) ^ read8(key, n - 8).rotate_left(42);
        (lo, hi)
    } else {
        let mut i = 0;
        while i + 16 < n {
            h = mix(read8(key, i) ^ P1, read8(key, i + 8) ^ h);
            i += 16;
        }
        (read8(key, n - 16), read8(key, n - 8))
    };
    let h = mix(a ^ P1, b ^ h);
    (h ^ (h >> 32)) as u32
}

/// Key equality that rejects most mismatches on their first eight bytes.
/// Keys of 8 to 48 bytes are compared as overlapping words (two below 16
/// bytes, six from 16), with no loop and no call.
#[inline]
pub(crate) fn same_key(stored: Option<&[u8]>, key: &[u8]) -> bool {
    let Some(a) = stored else { return false };
    let b = key;
    let n = b.len();
    if a.len() != n {
        return false;
    }
    if !(8..=48).contains(&n) {
        return a == b;
    }
    if read8(a, 0) != read8(b, 0) {
        return false;
    }
    let w = |i: usize| read8(a, i) ^ read8(b, i);
    if n < 16 {
        return w(n - 8) == 0;
    }
    // Windows [0, 16), [m, m + 16) and [n - 16, n) cover up to 48 bytes.
    let m = n / 2 - 8;
    (w(8) | w(m) | w(m + 8) | w(n - 16) | w(n - 8)) == 0
}

#[inline(always)]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn read8(k: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&k[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn read4(k: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&k[i..i + 4]);
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length from 0 to 100 and every single-byte change at every
    /// position: `same_key` says equal exactly when the bytes are.
    #[test]
    fn same_key_tells_every_one_byte_difference() {
        for n in 0..=100usize {
            let key: std::vec::Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            assert!(same_key(Some(&key), &key), "len {n}");
            assert!(!same_key(None, &key));
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 0x20;
                assert!(!same_key(Some(&other), &key), "len {n}, byte {i}");
            }
            if n > 0 {
                assert!(!same_key(Some(&key[..n - 1]), &key), "len {n}, shorter");
            }
        }
    }

    /// Two bytes changed by the same bits, anywhere: the word comparisons
    /// of overlapping windows must not cancel out.
    #[test]
    fn same_key_tells_every_two_byte_difference() {
        for n in 8..=49usize {
            let key: std::vec::Vec<u8> = (0..n).map(|i| (i * 5 + 1) as u8).collect();
            for p in 0..n {
                for q in p + 1..n {
                    let mut other = key.clone();
                    other[p] ^= 0x40;
                    other[q] ^= 0x40;
                    assert!(!same_key(Some(&other), &key), "len {n}, bytes {p} and {q}");
                }
            }
        }
    }

    /// The hash reads every byte of keys up to 48 bytes (their windows
    /// cover them): changing any one byte changes it for nearly every
    /// position, and the two seeds hash apart.
    #[test]
    fn hash_depends_on_every_byte_and_the_seed() {
        for n in 1..=80usize {
            let key: std::vec::Vec<u8> = (0..n).map(|i| (i * 13 + 1) as u8).collect();
            let h = hash_key(&key, SEED_PK);
            assert_ne!(h, hash_key(&key, SEED_EHK), "len {n}");
            let mut same = 0;
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 0x01;
                same += usize::from(hash_key(&other, SEED_PK) == h);
            }
            assert_eq!(same, 0, "len {n}: {same} one-byte changes kept the hash");
        }
    }

    #[test]
    fn fixed_index_counts_each_table_apart() {
        let mut idx = [[Slot::FREE; SLOTS_PER_TABLE_KEY]; 2];
        assert_eq!(idx.reserve(1, 1, 2, 0), Ok(()));
        assert_eq!(
            idx.reserve(2, 1, 0, 0),
            Err(Error::KeyCapacity {
                table: Table::PartitionKey,
                capacity: 2
            })
        );
        assert_eq!(
            idx.reserve(0, 0, 2, 1),
            Err(Error::KeyCapacity {
                table: Table::ExplicitHashKey,
                capacity: 2
            })
        );
    }

    #[test]
    fn buckets_spread_hashes_over_the_whole_table() {
        // The top bits of the hash pick the slot: [0, 2^32) maps onto
        // [0, n) in order, evenly.
        for n in [1usize, 64, 100, 4096] {
            assert_eq!(bucket(0, n), 0);
            assert_eq!(bucket(u32::MAX, n), n - 1);
            assert_eq!(bucket(1 << 31, n), n / 2);
            let mut hits = std::vec![0usize; n];
            for i in 0..(16 * n as u64) {
                hits[bucket((i * (1u64 << 32) / (16 * n as u64)) as u32, n)] += 1;
            }
            assert!(hits.iter().all(|&h| (15..=17).contains(&h)), "n = {n}: {hits:?}");
        }
    }

    /// What the README states: 128 bytes of index per `KEYS`.
    #[test]
    fn a_fixed_index_takes_128_bytes_per_key_of_each_table() {
        assert_eq!(core::mem::size_of::<Slot>(), 16);
        assert_eq!(core::mem::size_of::<[[Slot; SLOTS_PER_TABLE_KEY]; 1]>(), 128);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn growable_index_keeps_every_key_findable_when_it_grows() {
        let mut idx: std::vec::Vec<Slot> = std::vec::Vec::new();
        for k in 0..1000u32 {
            let keys = k as usize + 1;
            Slots::reserve(&mut idx, k as usize, 1, 0, 0).unwrap();
            // The smallest power of two from 64 with at most half in use.
            assert_eq!(idx.len(), (2 * keys).next_power_of_two().max(64), "{keys} keys");
            let hash = k.wrapping_mul(0x9E37_79B9);
            insert(
                &mut idx,
                Slot {
                    hash,
                    meta: k,
                    pos: k,
                    len: 1,
                },
            );
        }
        let mut found: std::vec::Vec<u32> = idx.iter().filter(|s| s.meta != EMPTY).map(|s| s.meta).collect();
        found.sort_unstable();
        assert_eq!(found, (0..1000).collect::<std::vec::Vec<_>>());
        // Both tables count: 40 and 40 keys need 160 slots, so 256.
        let mut idx: std::vec::Vec<Slot> = std::vec::Vec::new();
        Slots::reserve(&mut idx, 39, 1, 39, 1).unwrap();
        assert_eq!(idx.len(), 256);
        Slots::reserve(&mut idx, 64, 0, 64, 0).unwrap();
        assert_eq!(idx.len(), 256);
        Slots::reserve(&mut idx, 64, 0, 64, 1).unwrap();
        assert_eq!(idx.len(), 512);
        // Exactly half in use is allowed, also when growing in one step.
        let mut idx: std::vec::Vec<Slot> = std::vec::Vec::new();
        Slots::reserve(&mut idx, 63, 1, 0, 0).unwrap();
        assert_eq!(idx.len(), 128);
    }
}
