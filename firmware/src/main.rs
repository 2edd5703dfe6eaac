//! A sensor node: deaggregates a KPL record it received, then aggregates a
//! few readings with the no-heap aggregator into a fixed buffer. Built for
//! `thumbv7em-none-eabihf` to measure the crate's flash and stack cost.
#![no_std]
#![no_main]

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use cortex_m_rt::entry;
use panic_halt as _;

/// A record as it would arrive from the network.
static RECORD: &[u8] = include_bytes!("record.bin");

/// Where results go, so that nothing is optimised away.
static mut SINK: [u32; 4] = [0; 4];
/// Output buffer for aggregates: the KPL's 51,200-byte limit would not fit
/// this part's RAM beside everything else, so a 4 KiB one.
static mut OUT: [u8; 4096] = [0; 4096];

#[entry]
fn main() -> ! {
    // Readings a real node would sample; volatile so the compiler cannot
    // precompute anything.
    let mut reading = [0u8; 8];
    for (i, b) in reading.iter_mut().enumerate() {
        // SAFETY: a plain read of a static byte array.
        *b = unsafe { read_volatile(RECORD.as_ptr().add(i)) };
    }
    let input: &[u8] =
        unsafe { &*core::ptr::slice_from_raw_parts(read_volatile(&RECORD.as_ptr()), RECORD.len()) };
    let out: &mut [u8] = unsafe { &mut *addr_of_mut!(OUT) };
    let (a, b) = work(input, &reading, out);
    unsafe {
        write_volatile(addr_of_mut!(SINK[0]), a);
        write_volatile(addr_of_mut!(SINK[1]), b);
    }
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(not(feature = "baseline"))]
#[inline(never)]
fn work(input: &[u8], reading: &[u8; 8], out: &mut [u8]) -> (u32, u32) {
    (deaggregate(input), aggregate(reading, out))
}

#[cfg(feature = "baseline")]
#[inline(never)]
fn work(input: &[u8], reading: &[u8; 8], out: &mut [u8]) -> (u32, u32) {
    let mut s = 0u32;
    for b in input {
        s = s.wrapping_add(u32::from(*b));
    }
    out[..8].copy_from_slice(reading);
    (s, out.len() as u32)
}

/// Sums the data bytes of every user record (0 for a broken record).
#[cfg(not(feature = "baseline"))]
#[inline(never)]
fn deaggregate(input: &[u8]) -> u32 {
    match kinesis_agg::deaggregate_fixed::<8>(input) {
        Ok(kinesis_agg::Deaggregated::Aggregated(agg)) => agg
            .records()
            .map(|r| r.data.iter().map(|&b| u32::from(b)).sum::<u32>())
            .sum(),
        Ok(kinesis_agg::Deaggregated::Plain { data, .. }) => data.len() as u32,
        Err(_) => 0,
    }
}

/// Aggregates 32 readings from 4 sensors; returns the bytes produced.
#[cfg(not(feature = "baseline"))]
#[inline(never)]
fn aggregate(reading: &[u8; 8], out: &mut [u8]) -> u32 {
    const SENSORS: [&str; 4] = ["node-7/t0", "node-7/t1", "node-7/t2", "node-7/t3"];
    let mut agg = kinesis_agg::Aggregator::<_, 4>::new(out);
    let mut total = 0u32;
    for i in 0..32 {
        let rec = kinesis_agg::Record::new(SENSORS[i % 4], reading);
        if agg.add(rec).is_err() {
            total += agg.finish().map_or(0, |f| f.data.len() as u32);
            let _ = agg.add(rec);
        }
    }
    total + agg.finish().map_or(0, |f| f.data.len() as u32)
}
