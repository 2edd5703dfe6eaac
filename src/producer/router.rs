//! Which shard a hash key goes to, in a step or two: the answer of
//! [`ShardMap::route_index`] without its binary search over 128-bit keys
//! (eight unpredictable compares for 200 shards, on every user record).
//!
//! The hash key space is cut into 4,096 equal slices; for each, the table
//! holds the last shard starting at or below the slice's first key. A
//! lookup starts there and steps past the shards that start further into
//! the slice (none or one, unless the stream has thousands of shards).

use super::*;
use crate::HashKeyRange;

const SLICE_BITS: u32 = 12;
const SHIFT: u32 = 128 - SLICE_BITS;

pub(crate) struct Router {
    ranges: Vec<HashKeyRange>,
    /// Per slice: the last shard starting at or below its first key (0
    /// when none does).
    first: Vec<u32>,
}

impl Router {
    pub(crate) fn new(map: &ShardMap) -> Self {
        let ranges: Vec<HashKeyRange> = map.shards().iter().map(|s| s.range).collect();
        let mut first = Vec::with_capacity(1 << SLICE_BITS);
        let mut i = 0usize;
        for slice in 0..1u128 << SLICE_BITS {
            let key = slice << SHIFT;
            while i + 1 < ranges.len() && ranges[i + 1].start <= key {
                i += 1;
            }
            first.push(i as u32);
        }
        Router { ranges, first }
    }

    /// The index of the shard owning `hash_key`, `None` in a gap.
    #[inline]
    pub(crate) fn route_index(&self, hash_key: u128) -> Option<usize> {
        let mut i = *self.first.get((hash_key >> SHIFT) as usize)? as usize;
        while self.ranges.get(i + 1).is_some_and(|r| r.start <= hash_key) {
            i += 1;
        }
        self.ranges
            .get(i)
            .filter(|r| r.start <= hash_key && hash_key <= r.end)
            .map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shard;

    fn map(bounds: &[(u128, u128)]) -> ShardMap {
        ShardMap::new(bounds.iter().enumerate().map(|(i, &(a, b))| Shard {
            id: format!("shardId-{i:012}"),
            range: HashKeyRange::new(a, b).unwrap(),
        }))
        .unwrap()
    }

    /// Keys at and around every boundary, every slice's first key, and a
    /// spread of others.
    fn probes(m: &ShardMap, seed: u64) -> Vec<u128> {
        let mut keys = vec![0, 1, u128::MAX, u128::MAX - 1];
        for s in m.shards() {
            for k in [s.range.start, s.range.end] {
                keys.extend([k.wrapping_sub(1), k, k.wrapping_add(1)]);
            }
        }
        let step = if cfg!(miri) { 64 } else { 1 };
        keys.extend((0..1u128 << SLICE_BITS).step_by(step).map(|s| s << SHIFT));
        let mut x = seed | 1;
        for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(u128::from(x) << 64 | u128::from(x.rotate_left(29)));
        }
        keys
    }

    fn check(m: &ShardMap, seed: u64) {
        let r = Router::new(m);
        for k in probes(m, seed) {
            assert_eq!(r.route_index(k), m.route_index(k), "hash key {k}");
        }
    }

    #[test]
    fn it_answers_as_the_map_does() {
        // One shard; even splits of several sizes; shards narrower than a
        // slice; gaps (a map being changed); a lone shard in the middle.
        check(&ShardMap::single("shardId-000000000000"), 1);
        for n in [2u128, 3, 7, 200, 4096, 5000] {
            if cfg!(miri) && n > 200 {
                continue;
            }
            let w = u128::MAX / n;
            let bounds: Vec<(u128, u128)> = (0..n)
                .map(|i| (i * w, if i + 1 == n { u128::MAX } else { (i + 1) * w - 1 }))
                .collect();
            check(&map(&bounds), n as u64);
        }
        let narrow = 1u128 << 100;
        check(
            &map(&[
                (0, narrow),
                (narrow + 1, 2 * narrow),
                (2 * narrow + 1, 3 * narrow),
                (3 * narrow + 1, u128::MAX),
            ]),
            7,
        );
        let q = u128::MAX / 4;
        check(&map(&[(0, q), (2 * q, 3 * q)]), 11);
        check(&map(&[(q, 2 * q)]), 13);
        check(&map(&[(1, 5), (u128::MAX - 5, u128::MAX - 1)]), 17);
    }
}
