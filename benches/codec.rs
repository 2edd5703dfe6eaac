//! Aggregation and deaggregation against prost and against the MD5 floor.
//!
//!     cargo bench --bench codec
//!
//! Every group holds our implementation beside its baselines, so ratios
//! come from one run. Throughput is the aggregated record's size.
//!
//! Instruction counts, which do not depend on the machine's load: with
//! `CODEC_COUNT=WORKLOAD` (`small`, `ehk`, `tiny` or `large`) the bench
//! skips criterion and runs that workload's four paths of ours five times
//! each, one function per path, for `valgrind --tool=callgrind` to count
//! (`callgrind_annotate --inclusive=yes` gives each `count_*` function's
//! total):
//!
//!     cargo bench --bench codec --no-run
//!     CODEC_COUNT=small valgrind --tool=callgrind target/release/deps/codec-*[^.d]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_agg::{Aggregator, Deaggregated, MAGIC, Options, Record, RecordAggregator};
use md5::{Digest, Md5};
use prost::Message;

#[path = "../tests/support/pb.rs"]
#[allow(dead_code)]
mod pb;
use pb::{PbAggregatedRecord, PbRecord};

/// User records as a producer holds them: keys, and data in one arena
/// (read from the network or a file), so that both implementations read
/// their input the same way.
struct Workload {
    name: &'static str,
    records: Vec<(String, Option<String>, std::ops::Range<usize>)>,
    arena: Vec<u8>,
}

fn workload(name: &'static str, records: Vec<(String, Option<String>, Vec<u8>)>) -> Workload {
    let mut arena = Vec::new();
    let records = records
        .into_iter()
        .map(|(p, e, d)| {
            let start = arena.len();
            arena.extend_from_slice(&d);
            (p, e, start..arena.len())
        })
        .collect();
    Workload { name, records, arena }
}

/// The tests' deterministic generator, so every run sees the same data.
#[path = "../tests/support/rng.rs"]
#[allow(dead_code)]
mod rng;
use rng::Rng;

/// A key of 36 characters, shaped like a UUID.
fn uuid_key(rng: &mut Rng) -> String {
    let hex: String = (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rng.below(16) as usize]))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn workloads() -> Vec<Workload> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let keys: Vec<String> = (0..100).map(|_| uuid_key(&mut rng)).collect();
    let ehks: Vec<String> = (0..100)
        .map(|_| (u128::from(rng.next()) << 64 | u128::from(rng.next())).to_string())
        .collect();
    let small: Vec<_> = (0..10_000)
        .map(|_| (keys[(rng.next() % 100) as usize].clone(), None, rng.bytes(100)))
        .collect();
    let ehk: Vec<_> = (0..10_000)
        .map(|_| {
            (
                keys[(rng.next() % 100) as usize].clone(),
                Some(ehks[(rng.next() % 100) as usize].clone()),
                rng.bytes(100),
            )
        })
        .collect();
    let tiny: Vec<_> = (0..50_000)
        .map(|_| (keys[0].clone(), None, rng.bytes(10)))
        .collect();
    let large = vec![(keys[1].clone(), None, rng.bytes(1_000_000))];
    vec![
        workload("small", small),
        workload("ehk", ehk),
        workload("tiny", tiny),
        workload("large", large),
    ]
}

const LIMIT: usize = kinesis_agg::MAX_LIMIT;

/// What a Rust user writes today with prost: owned tables, a model, encode.
fn prost_aggregate(w: &Workload) -> Vec<u8> {
    let records = &w.records;
    let mut msg = PbAggregatedRecord::default();
    let mut pks: HashMap<&str, u64> = HashMap::new();
    let mut ehks: HashMap<&str, u64> = HashMap::new();
    for (pk, ehk, data) in records {
        let pi = *pks.entry(pk).or_insert_with(|| {
            msg.partition_key_table.push(pk.clone());
            msg.partition_key_table.len() as u64 - 1
        });
        let ei = ehk.as_ref().map(|e| {
            *ehks.entry(e).or_insert_with(|| {
                msg.explicit_hash_key_table.push(e.clone());
                msg.explicit_hash_key_table.len() as u64 - 1
            })
        });
        msg.records.push(PbRecord {
            partition_key_index: pi,
            explicit_hash_key_index: ei,
            data: w.arena[data.clone()].to_vec(),
            tags: vec![],
        });
    }
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

fn prost_deaggregate(blob: &[u8], verify: bool) -> usize {
    let body = &blob[4..blob.len() - 16];
    if verify && Md5::digest(body).as_slice() != &blob[blob.len() - 16..] {
        return 0;
    }
    let msg = PbAggregatedRecord::decode(body).expect("valid");
    let mut touched = 0usize;
    for r in &msg.records {
        let pk = &msg.partition_key_table[r.partition_key_index as usize];
        let ehk = r
            .explicit_hash_key_index
            .map(|i| &msg.explicit_hash_key_table[i as usize]);
        touched += pk.len()
            + ehk.map_or(0, String::len)
            + r.data.len()
            + usize::from(r.data.first().copied().unwrap_or(0));
    }
    touched
}

fn ours_deaggregate(blob: &[u8], opts: &Options) -> usize {
    match opts.deaggregate(blob).expect("valid") {
        Deaggregated::Aggregated(a) => {
            let mut touched = 0usize;
            for r in a.records() {
                touched += r.partition_key.len()
                    + r.explicit_hash_key.map_or(0, str::len)
                    + r.data.len()
                    + usize::from(r.data.first().copied().unwrap_or(0));
            }
            touched
        }
        Deaggregated::Plain { .. } => 0,
    }
}

/// Rounds of each path in a `CODEC_COUNT` run.
const COUNT_ROUNDS: usize = 5;

#[inline(never)]
fn count_aggregate(recs: &[Record<'_>], buf: &mut [u8]) -> usize {
    let mut total = 0;
    let mut agg = Aggregator::<_, 256>::with_limit(buf, LIMIT).unwrap();
    for _ in 0..COUNT_ROUNDS {
        for r in recs {
            if agg.add(*r).is_err() {
                unreachable!();
            }
        }
        total += agg.finish().unwrap().data.len();
    }
    total
}

#[inline(never)]
fn count_aggregate_alloc(recs: &[Record<'_>]) -> usize {
    let mut total = 0;
    let mut agg = RecordAggregator::with_limit(LIMIT).unwrap();
    for _ in 0..COUNT_ROUNDS {
        for r in recs {
            if agg.try_add(*r).is_err() {
                unreachable!();
            }
        }
        let done = agg.finish().unwrap();
        total += done.data().len();
        agg.recycle(done);
    }
    total
}

#[inline(never)]
fn count_deaggregate(blob: &[u8]) -> usize {
    let opts = Options::new();
    (0..COUNT_ROUNDS)
        .map(|_| ours_deaggregate(black_box(blob), &opts))
        .sum()
}

#[inline(never)]
fn count_deaggregate_unverified(blob: &[u8]) -> usize {
    let opts = Options::new().checksum(kinesis_agg::Checksum::Skip);
    (0..COUNT_ROUNDS)
        .map(|_| ours_deaggregate(black_box(blob), &opts))
        .sum()
}

/// The `CODEC_COUNT` run: one workload's paths, a fixed number of times.
fn count(name: &str) {
    let Some(w) = workloads().into_iter().find(|w| w.name == name) else {
        panic!("CODEC_COUNT: no workload {name}");
    };
    let recs: Vec<Record<'_>> = w
        .records
        .iter()
        .map(|(p, e, d)| Record::new(p, &w.arena[d.clone()]).with_optional_explicit_hash_key(e.as_deref()))
        .collect();
    let blob = prost_aggregate(&w);
    let mut buf = vec![0u8; LIMIT];
    black_box(count_aggregate(&recs, &mut buf));
    black_box(count_aggregate_alloc(&recs));
    black_box(count_deaggregate(&blob));
    black_box(count_deaggregate_unverified(&blob));
}

fn bench(c: &mut Criterion) {
    if let Ok(name) = std::env::var("CODEC_COUNT") {
        count(&name);
        return;
    }
    for w in workloads() {
        let recs: Vec<Record<'_>> = w
            .records
            .iter()
            .map(|(p, e, d)| {
                Record::new(p, &w.arena[d.clone()]).with_optional_explicit_hash_key(e.as_deref())
            })
            .collect();
        let blob = prost_aggregate(&w);
        let mut buf = vec![0u8; LIMIT];
        {
            // Sanity: our bytes are prost's bytes.
            let mut agg = Aggregator::<_, 256>::with_limit(&mut buf[..], LIMIT).unwrap();
            recs.iter().for_each(|r| agg.add(*r).unwrap());
            assert_eq!(agg.finish().unwrap().data, &blob[..]);
        }
        let body_len = blob.len() - 20;

        let mut g = c.benchmark_group(format!("aggregate/{}", w.name));
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("kinesis-agg", |b| {
            let mut agg = Aggregator::<_, 256>::with_limit(&mut buf[..], LIMIT).unwrap();
            b.iter(|| {
                for r in &recs {
                    if agg.add(*r).is_err() {
                        unreachable!();
                    }
                }
                black_box(agg.finish().unwrap().data.len())
            })
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("kinesis-agg-alloc", |b| {
            let mut agg = RecordAggregator::with_limit(LIMIT).unwrap();
            b.iter(|| {
                for r in &recs {
                    if agg.try_add(*r).is_err() {
                        unreachable!();
                    }
                }
                let done = agg.finish().unwrap();
                black_box(done.data().len());
                agg.recycle(done);
            })
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("prost", |b| {
            b.iter(|| black_box(prost_aggregate(black_box(&w)).len()))
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        let same_len = vec![0x5Au8; body_len];
        g.bench_function("md5-only", |b| {
            b.iter(|| black_box(Md5::digest(black_box(&same_len[..]))))
        });
        g.finish();

        let mut g = c.benchmark_group(format!("deaggregate/{}", w.name));
        let verified = Options::new();
        let unverified = Options::new().checksum(kinesis_agg::Checksum::Skip);
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("kinesis-agg", |b| {
            b.iter(|| black_box(ours_deaggregate(black_box(&blob), &verified)))
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("kinesis-agg-unverified", |b| {
            b.iter(|| black_box(ours_deaggregate(black_box(&blob), &unverified)))
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("prost", |b| {
            b.iter(|| black_box(prost_deaggregate(black_box(&blob), true)))
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("prost-unverified", |b| {
            b.iter(|| black_box(prost_deaggregate(black_box(&blob), false)))
        });
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("md5-only", |b| {
            b.iter(|| black_box(Md5::digest(black_box(&blob[4..blob.len() - 16]))))
        });
        g.finish();
    }
}

/// Independent aggregates, as a Lambda event or a GetRecords answer holds
/// them: `n` of about `size` bytes each (`ragged`: each of a size drawn
/// from 64 bytes to twice `size`), of 100-byte records over 100 keys.
fn batch(n: usize, size: usize, ragged: bool) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5EED_1234_ABCD_0002 ^ size as u64);
    let keys: Vec<String> = (0..100).map(|_| uuid_key(&mut rng)).collect();
    (0..n)
        .map(|_| {
            let target = if ragged {
                64 + rng.below(2 * size as u64 - 64) as usize
            } else {
                size
            };
            let mut agg = RecordAggregator::with_limit(LIMIT).unwrap();
            while agg.encoded_len() < target {
                let data = rng.bytes(100.min(target - agg.encoded_len()).max(1));
                agg.add(Record::new(&keys[rng.below(100) as usize], &data))
                    .unwrap();
            }
            agg.finish().unwrap().into_data()
        })
        .collect()
}

/// Many aggregates read through the batch API (their checksums computed
/// side by side, then each read), beside each read alone and beside
/// `md-5` over the same bodies one after another: the single-stream MD5
/// floor that one-at-a-time reading cannot pass.
fn bench_batches(c: &mut Criterion) {
    if std::env::var("CODEC_COUNT").is_ok() {
        return;
    }
    let opts = Options::new();
    for (name, blobs) in [
        ("64x50KiB", batch(64, 50 * 1024, false)),
        ("16x1MiB", batch(16, 1 << 20, false)),
        ("1000x1KiB", batch(1000, 1024, false)),
        ("1000x0-2KiB", batch(1000, 1024, true)),
    ] {
        let views: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let bytes: usize = views.iter().map(|b| b.len()).sum();
        let mut g = c.benchmark_group(format!("batch/{name}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("kinesis-agg-verify", |b| {
            b.iter(|| black_box(opts.verify_all(black_box(&views)).len()))
        });
        g.bench_function("kinesis-agg-read", |b| {
            b.iter(|| {
                let mut n = 0;
                for v in opts.verify_all(black_box(&views)) {
                    if let Ok(Deaggregated::Aggregated(a)) = v.deaggregate() {
                        n += a.records().map(|r| r.data.len()).sum::<usize>();
                    }
                }
                black_box(n)
            })
        });
        g.bench_function("kinesis-agg-one-by-one", |b| {
            b.iter(|| black_box(views.iter().map(|b| ours_deaggregate(b, &opts)).sum::<usize>()))
        });
        g.bench_function("md5-one-after-another", |b| {
            b.iter(|| {
                for v in &views {
                    black_box(Md5::digest(&v[4..v.len() - 16]));
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = codec;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench, bench_batches
}
criterion_main!(codec);
