//! The aggregators' key index: an open-addressing hash table whose slots
//! point at key bytes already written into the aggregate, so no key is
//! stored twice and no lookup scans a table. Both key tables share one
//! index; a slot says which table its key belongs to.

use crate::error::{Error, Table};

/// One slot of an aggregator's key index (16 bytes). An
/// [`IndexedAggregator`](crate::IndexedAggregator) keeps its index in the
/// caller's slots: [`INDEX_SLOTS_PER_KEY`](crate::INDEX_SLOTS_PER_KEY) of
/// them per key it can hold, starting as [`KeySlot::FREE`](Self::FREE).
/// What a slot holds is private to the aggregator.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
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
    /// A free slot, to fill an index with before the aggregator takes it
    /// (the aggregator frees every slot again when it starts).
    pub const FREE: Slot = Slot {
        hash: 0,
        meta: EMPTY,
        pos: 0,
        len: 0,
    };
}

/// Where an aggregator's key index lives: inside it
/// ([`FixedIndex`], an [`Aggregator`](crate::Aggregator)'s), in the
/// caller's slots (an [`IndexedAggregator`](crate::IndexedAggregator)'s),
/// or in a vector that grows (a
/// [`RecordAggregator`](crate::RecordAggregator)'s). Implemented for those
/// three only (sealed): what a slot holds is the aggregator's business.
pub trait Slots: AsRef<[Slot]> + AsMut<[Slot]> + sealed::Sealed {
    /// Keys of each table it holds; `None` for an index that grows.
    fn key_capacity(&self) -> Option<usize>;

    /// Makes room for `keys` keys in all (an index that grows grows
    /// here; a fixed one has what it has).
    #[doc(hidden)]
    fn grow_to(&mut self, keys: usize) {
        let _ = keys;
    }
}

/// Slots per `KEYS` of a fixed index: `KEYS` partition keys and `KEYS`
/// explicit hash keys, four slots each. At most a quarter of the slots are
/// in use, so nearly every key sits in its home slot and a lookup rarely
/// probes a second one (a mispredicted probe costs more than the hashing).
pub(crate) const SLOTS_PER_TABLE_KEY: usize = crate::limits::INDEX_SLOTS_PER_KEY;

/// Makes room in `slots` for `new_pk` more partition keys beyond `pk_used`
/// and `new_ehk` more explicit hash keys beyond `ehk_used`: a fixed index
/// has room or names the table that is full; a growable one grows.
///
/// # Errors
/// [`Error::KeyCapacity`] naming the table that is full.
pub(crate) fn reserve<S: Slots + ?Sized>(
    slots: &mut S,
    pk_used: usize,
    new_pk: usize,
    ehk_used: usize,
    new_ehk: usize,
) -> Result<(), Error> {
    let (pk, ehk) = (pk_used + new_pk, ehk_used + new_ehk);
    match slots.key_capacity() {
        Some(n) => within(n, pk, ehk),
        None => {
            slots.grow_to(pk + ehk);
            Ok(())
        }
    }
}

/// `Ok` when the index holds `pk` partition keys and `ehk` explicit hash
/// keys as it is (a growable one always will, after growing).
///
/// # Errors
/// [`Error::KeyCapacity`] naming the table that is full.
pub(crate) fn has_room<S: Slots + ?Sized>(slots: &S, pk: usize, ehk: usize) -> Result<(), Error> {
    match slots.key_capacity() {
        Some(n) => within(n, pk, ehk),
        None => Ok(()),
    }
}

/// `Ok` when `pk` partition keys and `ehk` explicit hash keys fit an
/// index of `n` keys per table; else the table that is full.
fn within(n: usize, pk: usize, ehk: usize) -> Result<(), Error> {
    if pk > n {
        return Err(Error::KeyCapacity {
            table: Table::PartitionKey,
            capacity: n,
        });
    }
    if ehk > n {
        return Err(Error::KeyCapacity {
            table: Table::ExplicitHashKey,
            capacity: n,
        });
    }
    Ok(())
}

mod sealed {
    /// Only the crate's index storage is one.
    pub trait Sealed {}
    impl<const KEYS: usize> Sealed for super::FixedIndex<KEYS> {}
    impl Sealed for &mut [super::Slot] {}
    #[cfg(feature = "alloc")]
    impl Sealed for alloc::vec::Vec<super::Slot> {}
}

/// The key index an [`Aggregator`](crate::Aggregator) keeps inside itself:
/// room for `KEYS` keys of each table, in
/// [`INDEX_SLOTS_PER_KEY`](crate::INDEX_SLOTS_PER_KEY) slots per key
/// (128 bytes per `KEYS`).
#[derive(Clone, Copy, Debug)]
pub struct FixedIndex<const KEYS: usize>([[Slot; SLOTS_PER_TABLE_KEY]; KEYS]);

impl<const KEYS: usize> FixedIndex<KEYS> {
    /// An index of free slots.
    pub const fn new() -> Self {
        FixedIndex([[Slot::FREE; SLOTS_PER_TABLE_KEY]; KEYS])
    }
}

impl<const KEYS: usize> Default for FixedIndex<KEYS> {
    fn default() -> Self {
        FixedIndex::new()
    }
}

impl<const KEYS: usize> AsRef<[Slot]> for FixedIndex<KEYS> {
    fn as_ref(&self) -> &[Slot] {
        self.0.as_flattened()
    }
}

impl<const KEYS: usize> AsMut<[Slot]> for FixedIndex<KEYS> {
    fn as_mut(&mut self) -> &mut [Slot] {
        self.0.as_flattened_mut()
    }
}

impl<const KEYS: usize> Slots for FixedIndex<KEYS> {
    fn key_capacity(&self) -> Option<usize> {
        Some(KEYS)
    }
}

/// Keys of each table an index of `slots` slots holds.
pub(crate) const fn slice_keys(slots: usize) -> usize {
    slots / SLOTS_PER_TABLE_KEY
}

/// The caller's index: room for `len / SLOTS_PER_TABLE_KEY` keys of each
/// table, as the fixed index of that many keys.
impl Slots for &mut [Slot] {
    fn key_capacity(&self) -> Option<usize> {
        Some(slice_keys(self.len()))
    }
}

#[cfg(feature = "alloc")]
impl Slots for alloc::vec::Vec<Slot> {
    fn key_capacity(&self) -> Option<usize> {
        None
    }

    fn grow_to(&mut self, need: usize) {
        // Grows to keep at most half the slots in use: fewer slots per key
        // than the fixed index, since this one may hold a great many keys.
        if need <= self.len() / 2 {
            return;
        }
        let mut n = self.len().max(64);
        while need > n / 2 {
            n *= 2;
        }
        let old = core::mem::replace(self, alloc::vec![Slot::FREE; n]);
        for s in old.into_iter().filter(|s| s.meta != EMPTY) {
            insert(self, s);
        }
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

/// The index's hash of key bytes: on 64-bit targets [`hash_key_wide`]; on
/// 32-bit ones (microcontrollers, wasm32), where a 64x64->128 multiply
/// takes many instructions and much flash, [`hash_key_narrow`]. Lookups
/// compare whole keys, so the choice changes speed and size only, never an
/// answer or a byte written.
#[inline]
pub(crate) fn hash_key(key: &[u8], seed: u64) -> u32 {
    #[cfg(target_pointer_width = "64")]
    return hash_key_wide(key, seed);
    #[cfg(not(target_pointer_width = "64"))]
    return hash_key_narrow(key, seed);
}

/// A word-at-a-time hash on 32-bit multiplies (MurmurHash3's x86_32 mixing
/// and finalizer, seeded by both halves of `seed`), for 32-bit targets.
#[cfg_attr(target_pointer_width = "64", allow(dead_code))]
pub(crate) fn hash_key_narrow(key: &[u8], seed: u64) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let scramble = |w: u32| w.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = (seed as u32) ^ ((seed >> 32) as u32).rotate_left(7);
    let mut words = key.chunks_exact(4);
    for w in &mut words {
        h ^= scramble(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let mut tail = 0u32;
    for (i, &b) in words.remainder().iter().enumerate() {
        tail |= u32::from(b) << (8 * i);
    }
    h ^= scramble(tail) ^ key.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A fast non-cryptographic hash of key bytes, built on the 64x64->128
/// multiply folded of wyhash. Keys of up to 48 bytes take one multiply:
/// their three 16-byte windows (start, middle, end, which cover the key)
/// are folded together with rotations first. Longer keys take one multiply
/// per 16 bytes. Keys of one table and the other hash apart by `seed`.
/// Lookups compare whole keys, so a collision costs a probe, never a wrong
/// answer. For 64-bit targets.
#[inline]
#[cfg_attr(not(target_pointer_width = "64"), allow(dead_code))]
pub(crate) fn hash_key_wide(key: &[u8], seed: u64) -> u32 {
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

    type Hash = fn(&[u8], u64) -> u32;
    const HASHES: [(&str, Hash); 2] = [("wide", hash_key_wide), ("narrow", hash_key_narrow)];

    /// Both hashes read every byte of keys (the wide one through windows
    /// that cover keys up to 48 bytes): changing any one byte changes the
    /// hash, and the two seeds hash apart.
    #[test]
    fn hash_depends_on_every_byte_and_the_seed() {
        for (name, hash) in HASHES {
            for n in 1..=80usize {
                let key: std::vec::Vec<u8> = (0..n).map(|i| (i * 13 + 1) as u8).collect();
                let h = hash(&key, SEED_PK);
                assert_ne!(h, hash(&key, SEED_EHK), "{name}, len {n}");
                let mut same = 0;
                for i in 0..n {
                    let mut other = key.clone();
                    other[i] ^= 0x01;
                    same += usize::from(hash(&other, SEED_PK) == h);
                }
                assert_eq!(same, 0, "{name}, len {n}: {same} one-byte changes kept the hash");
            }
            // Keys that differ only in length (trailing zero bytes).
            assert_ne!(hash(b"ab", SEED_PK), hash(b"ab\0", SEED_PK), "{name}");
            assert_ne!(hash(b"", SEED_PK), hash(b"\0\0\0\0", SEED_PK), "{name}");
        }
    }

    /// The index uses the hash chosen for the target's word size.
    #[test]
    fn the_index_hashes_with_the_targets_choice() {
        let chosen: Hash = if cfg!(target_pointer_width = "64") {
            hash_key_wide
        } else {
            hash_key_narrow
        };
        for key in [&b""[..], b"a", b"sensor-17", &[7u8; 100]] {
            for seed in [SEED_PK, SEED_EHK] {
                assert_eq!(hash_key(key, seed), chosen(key, seed));
            }
        }
    }

    /// The narrow hash is a bijection of keys of one length up to four
    /// bytes (each of its steps is one on 32-bit words): every two-byte
    /// key and a spread of four-byte keys hash apart, so no byte position
    /// shadows another.
    #[test]
    fn narrow_hash_tells_every_short_key_apart() {
        // Under Miri, a sample (the whole range takes it many minutes).
        let last = if cfg!(miri) { 2048 } else { u16::MAX };
        let mut seen = std::collections::HashSet::new();
        for k in 0..=last {
            assert!(
                seen.insert(hash_key_narrow(&k.to_le_bytes(), SEED_PK)),
                "two-byte key {k}"
            );
        }
        seen.clear();
        for k in 0..=last {
            let w = u32::from(k).wrapping_mul(0x0101_0101) ^ (u32::from(k) << 11);
            assert!(
                seen.insert(hash_key_narrow(&w.to_le_bytes(), SEED_EHK)),
                "four-byte key {w:#x}"
            );
        }
    }

    /// Typical keys (numbered sensors, UUID-like strings) spread over the
    /// index's buckets about as evenly as random hashes would: no bucket
    /// takes a pile, and home-slot collisions stay near what chance gives.
    #[test]
    fn hashes_spread_typical_keys_over_the_buckets() {
        // Under Miri, the sensor names only.
        let uuids = if cfg!(miri) { 0 } else { 2000u64 };
        let keys: std::vec::Vec<std::string::String> = (0..2000)
            .map(|i| std::format!("sensor-{i}"))
            .chain((0..uuids).map(|i| std::format!("{:08x}-4b2c-9d1e-{:012x}", i * 7919, i)))
            .collect();
        for (name, hash) in HASHES {
            for chunk in keys.chunks(2000) {
                let n = 4 * chunk.len();
                let mut hits = std::vec![0u32; n];
                for k in chunk {
                    hits[bucket(hash(k.as_bytes(), SEED_PK), n)] += 1;
                }
                // 2,000 keys in 8,000 buckets: chance gives about 230
                // keys sharing a bucket, rarely a bucket of more than 4.
                let shared: u32 = hits.iter().filter(|&&h| h > 1).map(|&h| h - 1).sum();
                let most = hits.iter().copied().max().unwrap_or(0);
                assert!(shared < 330, "{name}: {shared} keys share a bucket");
                assert!(most <= 6, "{name}: a bucket of {most}");
            }
        }
    }

    #[test]
    fn fixed_index_counts_each_table_apart() {
        let mut idx = FixedIndex::<2>::new();
        assert_eq!(reserve(&mut idx, 1, 1, 2, 0), Ok(()));
        assert_eq!(
            reserve(&mut idx, 2, 1, 0, 0),
            Err(Error::KeyCapacity {
                table: Table::PartitionKey,
                capacity: 2
            })
        );
        assert_eq!(
            reserve(&mut idx, 0, 0, 2, 1),
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
        assert_eq!(core::mem::size_of::<FixedIndex<1>>(), 128);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn growable_index_keeps_every_key_findable_when_it_grows() {
        let mut idx: std::vec::Vec<Slot> = std::vec::Vec::new();
        for k in 0..1000u32 {
            let keys = k as usize + 1;
            reserve(&mut idx, k as usize, 1, 0, 0).unwrap();
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
        reserve(&mut idx, 39, 1, 39, 1).unwrap();
        assert_eq!(idx.len(), 256);
        reserve(&mut idx, 64, 0, 64, 0).unwrap();
        assert_eq!(idx.len(), 256);
        reserve(&mut idx, 64, 0, 64, 1).unwrap();
        assert_eq!(idx.len(), 512);
        // Exactly half in use is allowed, also when growing in one step.
        let mut idx: std::vec::Vec<Slot> = std::vec::Vec::new();
        reserve(&mut idx, 63, 1, 0, 0).unwrap();
        assert_eq!(idx.len(), 128);
    }
}
