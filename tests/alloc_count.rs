//! Allocation counts: deaggregation with fixed tables and the no-heap
//! aggregator allocate nothing at all; the alloc aggregator allocates
//! nothing per record once warmed up.
//!
//! A counting global allocator counts the allocations of the thread that
//! asked for counting, so the test harness's own threads do not interfere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kinesis_agg::{
    Aggregator, Deaggregated, HashKeyRange, Record, RecordAggregator, Shard, ShardMap, ShardedAggregator,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
        BYTES.with(|b| b.set(b.get() + size));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (r, n, _) = allocated(f);
    (r, n)
}

/// The result, the allocations and the bytes they asked for.
fn allocated<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    BYTES.with(|b| b.set(0));
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get), BYTES.with(Cell::get))
}

const KEYS: [&str; 5] = ["sensor-a", "sensor-b", "sensor-c", "sensor-d", "sensor-e"];

/// Record counts scaled down under Miri, which interprets every instruction.
const fn scale(n: u32) -> u32 {
    if cfg!(miri) { n / 40 } else { n }
}

#[test]
fn no_heap_aggregation_and_deaggregation_allocate_nothing() {
    let limit = if cfg!(miri) { 1_024 } else { 51_200 };
    let mut buf = vec![0u8; limit];
    let mut out = vec![0u8; limit];
    let mut out_len = 0;
    let mut last_count = 0;
    let ((), n) = allocations(|| {
        let mut agg = Aggregator::<_, 64>::with_limit(&mut buf[..], limit).unwrap();
        for i in 0..scale(2_000) {
            let data = i.to_le_bytes();
            let rec = Record::new(KEYS[i as usize % 5], &data).with_explicit_hash_key("12345");
            if agg.add(rec).is_err() {
                let done = agg.finish().unwrap();
                out_len = done.data.len();
                out[..out_len].copy_from_slice(done.data);
                agg.add(rec).unwrap();
            }
        }
        let done = agg.finish().unwrap();
        out_len = done.data.len();
        last_count = done.record_count;
        out[..out_len].copy_from_slice(done.data);
    });
    assert_eq!(n, 0, "no-heap aggregator allocated");
    let (count, n) = allocations(
        || match kinesis_agg::deaggregate_fixed::<8>(&out[..out_len]).unwrap() {
            Deaggregated::Aggregated(a) => a.records().map(|r| r.data.len()).sum::<usize>(),
            Deaggregated::Plain { .. } => 0,
        },
    );
    assert_eq!(n, 0, "fixed-table deaggregation allocated");
    // Every record's four bytes of data, read back.
    assert!(last_count > 10);
    assert_eq!(count, 4 * last_count);
}

#[test]
fn alloc_aggregator_allocates_nothing_per_record_after_warm_up() {
    let mut agg = RecordAggregator::with_limit(if cfg!(miri) { 1_024 } else { 51_200 }).unwrap();
    let data = [7u8; 100];
    let run = |agg: &mut RecordAggregator, records: u32| {
        let mut completed = 0;
        for i in 0..records {
            if let Some(done) = agg.add(Record::new(KEYS[i as usize % 5], &data)).unwrap() {
                completed += 1;
                agg.recycle(done);
            }
        }
        completed
    };
    // Warm-up: first buffers and the key index.
    let (c, _) = allocations(|| run(&mut agg, scale(3_000)));
    assert!(c >= 2);
    let (completed, n) = allocations(|| run(&mut agg, scale(20_000)));
    assert!(completed >= 20, "{completed}");
    assert_eq!(
        n,
        0,
        "{n} allocations for {} records in steady state",
        scale(20_000)
    );
}

#[test]
fn the_alloc_aggregator_keeps_two_spare_buffers() {
    let mut agg = RecordAggregator::with_limit(1_000).unwrap();
    let mut full = Vec::new();
    for _ in 0..3 {
        agg.add(Record::new("k", &[1u8; 10])).unwrap();
        full.push(agg.finish().unwrap());
    }
    // Three handed back, two kept: the third new aggregate allocates its
    // buffer (one allocation: the key index is already warm).
    for a in full {
        agg.recycle(a);
    }
    let mut made = Vec::with_capacity(3);
    let (_, n) = allocations(|| {
        for _ in 0..3 {
            agg.add(Record::new("k", &[1u8; 10])).unwrap();
            made.push(agg.finish().unwrap());
        }
    });
    assert_eq!(n, 1);
    assert_eq!(made.len(), 3);
}

#[test]
fn heap_deaggregation_allocates_only_its_two_tables() {
    let mut agg = RecordAggregator::new();
    for i in 0..scale(1_000) {
        agg.add(Record::new(KEYS[i as usize % 5], &i.to_le_bytes()).with_explicit_hash_key("9"))
            .unwrap();
    }
    let blob = agg.finish().unwrap().into_data();
    let (records, n) = allocations(|| match kinesis_agg::deaggregate(&blob).unwrap() {
        Deaggregated::Aggregated(a) => a.records().count(),
        Deaggregated::Plain { .. } => 0,
    });
    assert_eq!(records, scale(1_000) as usize);
    // One growing vector per table: 5 keys take an allocation and one
    // growth (capacity 4, then 8), 1 key one allocation.
    assert_eq!(n, 3);
}

#[test]
fn sharded_aggregator_reuses_buffers_once_aggregates_are_recycled() {
    let limit = if cfg!(miri) { 1_024 } else { 51_200 };
    let half = 1u128 << 127;
    let map = ShardMap::new([
        Shard {
            id: "shardId-0".into(),
            range: HashKeyRange::new(0, half - 1).unwrap(),
        },
        Shard {
            id: "shardId-1".into(),
            range: HashKeyRange::new(half, u128::MAX).unwrap(),
        },
    ])
    .unwrap();
    let mut agg = ShardedAggregator::with_limit(map, limit).unwrap();
    let data = [7u8; 100];
    let run = |agg: &mut ShardedAggregator, records: u32| {
        let mut completed = 0;
        for i in 0..records {
            for done in agg.add(Record::new(KEYS[i as usize % 5], &data)).unwrap() {
                completed += 1;
                agg.recycle(done);
            }
        }
        completed
    };
    let (warm, _) = allocations(|| run(&mut agg, scale(3_000)));
    assert!(warm >= 4, "{warm}");
    let (completed, n, bytes) = allocated(|| run(&mut agg, scale(20_000)));
    assert!(completed >= 20, "{completed}");
    // Only the vector each completing add returns: no buffer, no string.
    assert_eq!(n, completed, "{n} allocations for {completed} aggregates");
    assert!(
        bytes < completed * 1024,
        "{bytes} bytes for {completed} aggregates"
    );
}
