//! Allocation counts: deaggregation with fixed tables and the no-heap
//! aggregator allocate nothing at all; the alloc aggregator allocates
//! nothing per record once warmed up.
//!
//! A counting global allocator counts the allocations of the thread that
//! asked for counting, so the test harness's own threads do not interfere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kinesis_agg::{Aggregator, Deaggregated, Record, RecordAggregator};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
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
    assert!(count > 0);
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
    // One growing vector per table (5 keys: 2 allocations; 1 key: 1).
    assert!(n <= 3, "{n}");
}
