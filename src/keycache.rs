//! Partition keys' MD5s, remembered. An aggregator for a stream's shards
//! sees the same keys again and again, and routing a user record needs its
//! key's MD5: looking it up costs a fraction of computing it, when the
//! table stays in the processor's cache.
//!
//! Two open-addressed tables, found by linear probing within 16 entries of
//! a key's place: keys of up to 15 bytes in 32-byte entries, keys of 16 to
//! 47 bytes in 64-byte entries (one cache line each: a lookup reads one
//! line, seldom two). Each starts with 1,024 entries and doubles whenever
//! it is three quarters full, up to 65,536 entries (2 MiB and 4 MiB); full,
//! a new key that finds no free entry near its place takes the place of an
//! old one. Longer keys are hashed every time.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::Error;

const MIN_ENTRIES: usize = 1024;
const MAX_ENTRIES: usize = 1 << 16;
/// How far from its place a key may be.
const PROBES: usize = 16;
/// The seed of the places (any value; not the aggregator's).
const SEED: u64 = 0x6b65_7973_2d6d_6435;

/// An entry: a key and its MD5, in one cache line or half of one.
trait Entry: Copy {
    /// The longest key it holds (bytes).
    const KEY_MAX: usize;
    const EMPTY: Self;
    fn new(key: &[u8], md5: u128) -> Self;
    /// The key, empty for an empty entry (a partition key has at least one
    /// character).
    fn key(&self) -> &[u8];
    fn md5(&self) -> u128;
}

macro_rules! entry {
    ($name:ident, $align:literal, $key_max:literal) => {
        #[derive(Clone, Copy)]
        #[repr(C, align($align))]
        struct $name {
            md5: u128,
            len: u8,
            key: [u8; $key_max],
        }

        impl Entry for $name {
            const KEY_MAX: usize = $key_max;
            const EMPTY: Self = $name {
                md5: 0,
                len: 0,
                key: [0; $key_max],
            };
            #[inline]
            fn new(key: &[u8], md5: u128) -> Self {
                let mut e = Self::EMPTY;
                e.md5 = md5;
                e.len = key.len() as u8;
                e.key[..key.len()].copy_from_slice(key);
                e
            }
            #[inline]
            fn key(&self) -> &[u8] {
                &self.key[..usize::from(self.len).min($key_max)]
            }
            #[inline]
            fn md5(&self) -> u128 {
                self.md5
            }
        }
    };
}

entry!(Short, 32, 15);
entry!(Long, 64, 47);

struct Table<E> {
    entries: Vec<E>,
    /// Entries in use.
    used: usize,
    /// Which entry near its place a new key takes when none is free.
    victim: usize,
}

impl<E: Entry> Table<E> {
    fn new() -> Self {
        Table {
            entries: vec![E::EMPTY; MIN_ENTRIES],
            used: 0,
            victim: 0,
        }
    }

    fn place(key: &[u8], entries: usize) -> usize {
        crate::index::hash_key(key, SEED) as usize & (entries - 1)
    }

    /// The MD5 of `key`, and whether it had to be computed.
    #[inline]
    fn hash(&mut self, key: &str) -> (u128, bool) {
        let b = key.as_bytes();
        let mask = self.entries.len() - 1;
        let home = Self::place(b, self.entries.len());
        let mut free = None;
        for step in 0..PROBES {
            let at = (home + step) & mask;
            let e = &self.entries[at];
            if e.key().is_empty() {
                free = Some(at);
                break;
            }
            if crate::index::same_key(Some(e.key()), b) {
                return (e.md5(), false);
            }
        }
        let md5 = crate::partition_key_hash(key);
        match free {
            Some(at) => {
                self.entries[at] = E::new(b, md5);
                self.used += 1;
                if 4 * self.used > 3 * self.entries.len() && self.entries.len() < MAX_ENTRIES {
                    self.grow();
                }
            }
            // No room near its place: a larger table, or at the cap, the
            // place of a key near it.
            None if self.entries.len() < MAX_ENTRIES => {
                self.grow();
                self.insert(E::new(b, md5));
            }
            None => {
                self.victim = (self.victim + 1) % PROBES;
                self.entries[(home + self.victim) & mask] = E::new(b, md5);
            }
        }
        (md5, true)
    }

    /// Puts an entry in the first free place near its own; `false` when
    /// there is none.
    fn insert(&mut self, e: E) -> bool {
        let n = self.entries.len();
        let home = Self::place(e.key(), n);
        match (0..PROBES)
            .map(|step| (home + step) & (n - 1))
            .find(|&at| self.entries[at].key().is_empty())
        {
            Some(at) => {
                self.entries[at] = e;
                self.used += 1;
                true
            }
            None => false,
        }
    }

    /// Doubles the table, keeping what it holds (but a key that finds no
    /// free place near its own in the new table, which is at most three
    /// eighths full).
    fn grow(&mut self) {
        let n = 2 * self.entries.len();
        let old = core::mem::replace(&mut self.entries, vec![E::EMPTY; n]);
        self.used = 0;
        for e in old.into_iter().filter(|e| !e.key().is_empty()) {
            self.insert(e);
        }
    }
}

/// Effective hash keys of user records, with the partition keys' MD5s
/// remembered: what routing a stream of records to shards computes for
/// every record, at a fraction of the cost once the keys repeat.
///
/// Keys of up to 47 bytes are remembered, in tables that grow with the
/// keys in use to at most 6 MiB; past that, a new key takes the place of an
/// old one. Longer keys are hashed every time. Every answer is the MD5 of
/// the key, whatever the tables hold.
///
/// # Examples
/// ```
/// use kinesis_agg::{HashKeyCache, effective_hash_key};
/// let mut cache = HashKeyCache::new();
/// for _ in 0..3 {
///     assert_eq!(cache.hash_key("sensor-7", None), effective_hash_key("sensor-7", None));
/// }
/// assert_eq!(cache.hash_key("sensor-7", Some("42")), Ok(42));
/// ```
pub struct HashKeyCache {
    short: Table<Short>,
    long: Table<Long>,
}

impl Default for HashKeyCache {
    fn default() -> Self {
        HashKeyCache::new()
    }
}

impl core::fmt::Debug for HashKeyCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HashKeyCache")
            .field("keys", &(self.short.used + self.long.used))
            .field("bytes", &self.footprint())
            .finish()
    }
}

impl HashKeyCache {
    /// An empty cache (its first tables take 96 KiB).
    pub fn new() -> Self {
        HashKeyCache {
            short: Table::new(),
            long: Table::new(),
        }
    }

    /// The hash key of a partition key: the MD5 of its UTF-8 bytes as a
    /// big-endian 128-bit number, as
    /// [`partition_key_hash`](crate::partition_key_hash) gives it.
    pub fn partition_key_hash(&mut self, key: &str) -> u128 {
        match key.len() {
            n if (1..=Short::KEY_MAX).contains(&n) => self.short.hash(key).0,
            n if (1..=Long::KEY_MAX).contains(&n) => self.long.hash(key).0,
            _ => crate::partition_key_hash(key),
        }
    }

    /// A user record's effective hash key, as
    /// [`effective_hash_key`](crate::effective_hash_key) gives it.
    ///
    /// # Errors
    /// [`Error::InvalidHashKey`] for an explicit hash key that is not one.
    pub fn hash_key(&mut self, partition_key: &str, explicit_hash_key: Option<&str>) -> Result<u128, Error> {
        match explicit_hash_key {
            Some(e) => crate::parse_hash_key(e),
            None => Ok(self.partition_key_hash(partition_key)),
        }
    }

    /// The bytes its tables take.
    pub fn footprint(&self) -> usize {
        self.short.entries.len() * core::mem::size_of::<Short>()
            + self.long.entries.len() * core::mem::size_of::<Long>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::String;

    #[test]
    fn an_entry_is_half_a_cache_line_or_one() {
        assert_eq!(core::mem::size_of::<Short>(), 32);
        assert_eq!(core::mem::align_of::<Short>(), 32);
        assert_eq!(core::mem::size_of::<Long>(), 64);
        assert_eq!(core::mem::align_of::<Long>(), 64);
    }

    #[test]
    fn every_answer_is_the_md5_of_the_key() {
        let mut k = HashKeyCache::new();
        // Under Miri (CI's sample), fewer keys and rounds, of every shape
        // still (growth is the next test's).
        let (n, rounds) = if cfg!(miri) { (700, 2) } else { (3000, 3) };
        let keys: Vec<String> = (0..n)
            .map(|i| match i % 5 {
                0 => format!("k{i}"),
                1 => "x".repeat(1 + i % (Long::KEY_MAX + 2)),
                2 => format!("{}-{i}", "long".repeat(12)), // over 47 bytes
                3 => format!("{}-{i}", "mid".repeat(6)),   // 16 to 47
                _ => format!("ключ-{i}"),
            })
            .chain([String::new()])
            .collect();
        for round in 0..rounds {
            for key in &keys {
                assert_eq!(
                    k.partition_key_hash(key),
                    crate::partition_key_hash(key),
                    "{key} in round {round}"
                );
            }
        }
        assert_eq!(
            k.hash_key("k", Some("12a")),
            Err(Error::InvalidHashKey { position: 2 })
        );
    }

    /// Memory: the tables grow with the keys in use, up to their cap, and
    /// the answers stay right past it.
    #[test]
    fn the_tables_grow_with_the_keys_in_use_and_no_further() {
        let mut k = HashKeyCache::new();
        assert_eq!(k.footprint(), (32 + 64) << 10);
        let n = if cfg!(miri) { 2_000 } else { 20_000 };
        let keys: Vec<String> = (0..n).map(|i| format!("device-{i:05}")).collect();
        for key in &keys {
            k.partition_key_hash(key);
        }
        // Room for every key, at most three quarters full; and no more
        // than sixteen entries for three keys: a table doubles when three
        // quarters full (to three eighths), or sooner when the sixteen
        // places after a key's own are taken, which happens only when
        // the table is nearly as full.
        let short = k.short.entries.len();
        assert!(short * 3 >= n * 4 && short * 3 <= n * 16, "{short} entries");
        assert_eq!(k.long.entries.len(), MIN_ENTRIES);
        // A stream of new keys only: the tables stop at their cap (2 MiB
        // of short entries), and the answers stay right.
        if !cfg!(miri) {
            for i in 0..200_000u32 {
                let key = format!("new-{i}");
                assert_eq!(k.partition_key_hash(&key), crate::partition_key_hash(&key));
            }
            assert_eq!(k.footprint(), (2 << 20) + (64 << 10));
            assert_eq!(
                k.partition_key_hash("device-00001"),
                crate::partition_key_hash("device-00001")
            );
        }
    }

    #[test]
    fn growing_keeps_what_the_table_held() {
        let mut t: Table<Long> = Table::new();
        // Under three quarters of the first table: no growth yet.
        let keys: Vec<String> = (0..MIN_ENTRIES / 2).map(|i| format!("sensor-{i:010}")).collect();
        for key in &keys {
            assert!(t.hash(key).1);
        }
        assert_eq!(t.entries.len(), MIN_ENTRIES);
        t.grow();
        assert_eq!(t.entries.len(), 2 * MIN_ENTRIES);
        for key in &keys {
            assert_eq!(t.hash(key), (crate::partition_key_hash(key), false));
        }
    }
}
