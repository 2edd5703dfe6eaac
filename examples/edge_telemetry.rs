//! An edge gateway packs sensor readings into KPL aggregated records with
//! the no-heap aggregator over one fixed buffer (the KPL's default limit of
//! 51,200 bytes), then checks every aggregate by deaggregating it again with
//! fixed-capacity key tables: no heap on either side.
//!
//!     cargo run --release --example edge_telemetry [READINGS]

use std::time::Instant;

use kinesis_agg::{Aggregator, Deaggregated, Error, Record, deaggregate_fixed};

/// The KPL's default AggregationMaxSize.
const LIMIT: usize = 51_200;
/// Sensors on this gateway: each reading is keyed by its sensor id.
const SENSORS: usize = 48;

/// A reading as the gateway encodes it: sensor, sequence number, value.
fn encode_reading(sensor: usize, seq: u64, out: &mut [u8; 24]) -> &[u8] {
    // A deterministic pseudo-random temperature in centi-degrees.
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sensor as u64;
    x ^= x >> 29;
    let centi = 1500 + (x % 1500) as i32;
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..12].copy_from_slice(&centi.to_le_bytes());
    out[12..16].copy_from_slice(&(sensor as u32).to_le_bytes());
    let n = 16 + (x % 9) as usize; // variable-length payloads
    out[16..n].fill(b'#');
    &out[..n]
}

fn main() {
    let readings: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let names: Vec<String> = (0..SENSORS).map(|i| format!("gw-7/sensor-{i:02}")).collect();

    let mut buf = [0u8; LIMIT];
    let mut agg = Aggregator::<_, 64>::with_limit(&mut buf[..], LIMIT).expect("limit in range");
    let mut stats = Stats::default();
    let started = Instant::now();
    let mut scratch = [0u8; 24];

    for seq in 0..readings {
        let sensor = (seq as usize * 7 + seq as usize / 5) % SENSORS;
        let data = encode_reading(sensor, seq, &mut scratch);
        let record = Record::new(&names[sensor], data);
        if let Err(refused) = agg.add(record) {
            assert_eq!(refused.error, Error::Full, "{}", refused.error);
            ship(&mut agg, &names, &mut stats);
            agg.add(refused.record).expect("fits in an empty aggregate");
        }
    }
    ship(&mut agg, &names, &mut stats);
    let secs = started.elapsed().as_secs_f64();

    assert_eq!(stats.records, readings, "every reading came back");
    println!("kinesis-agg edge telemetry: {readings} readings from {SENSORS} sensors");
    println!(
        "  {} aggregates, {} bytes ({} data bytes, {:.1} readings per aggregate, largest {} of {LIMIT})",
        stats.aggregates,
        stats.bytes,
        stats.data_bytes,
        readings as f64 / stats.aggregates as f64,
        stats.largest
    );
    println!(
        "  aggregated, checksummed, deaggregated and verified in {:.3} s: {:.0} user records per second",
        secs,
        readings as f64 / secs
    );
    println!("  every reading verified: {} of {readings}", stats.records);
}

#[derive(Default)]
struct Stats {
    aggregates: u64,
    bytes: u64,
    data_bytes: u64,
    records: u64,
    largest: usize,
}

/// "Sends" the finished aggregate: deaggregates it and checks each reading.
fn ship(agg: &mut Aggregator<&mut [u8], 64>, names: &[String], stats: &mut Stats) {
    let Some(done) = agg.finish() else { return };
    assert!(done.data.len() + done.partition_key.len() <= LIMIT);
    stats.aggregates += 1;
    stats.bytes += done.data.len() as u64;
    stats.largest = stats.largest.max(done.data.len() + done.partition_key.len());
    let Ok(Deaggregated::Aggregated(back)) = deaggregate_fixed::<64>(done.data) else {
        panic!("aggregate {} does not deaggregate", stats.aggregates);
    };
    assert_eq!(back.len(), done.record_count);
    let mut scratch = [0u8; 24];
    for r in back.records() {
        let seq = u64::from_le_bytes(r.data[..8].try_into().expect("8 bytes"));
        let sensor = u32::from_le_bytes(r.data[12..16].try_into().expect("4 bytes")) as usize;
        assert_eq!(r.partition_key, names[sensor]);
        assert_eq!(r.data, encode_reading(sensor, seq, &mut scratch), "reading {seq}");
        assert_eq!(seq, stats.records, "readings in order");
        stats.records += 1;
        stats.data_bytes += r.data.len() as u64;
    }
}
