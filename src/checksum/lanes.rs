//! MD5 of many independent messages at once, in SIMD lanes.
//!
//! MD5 is serial within a message: each of its 64 steps needs the one
//! before. Independent messages have no such chain between them, so their
//! steps can run side by side, one message a lane of a vector register
//! (the "multi-buffer" technique). Written in plain safe Rust: the loop
//! over the lanes is outermost, the 64 steps written out inside it, so the
//! compiler's loop vectorizer makes each step one vector instruction for
//! all lanes (the natural form, a loop over the lanes inside each step,
//! stays scalar). 8 lanes: two vectors of 4 with SSE2 (every x86-64) or
//! NEON (every aarch64), one with AVX2; 16 with AVX-512
//! (`RUSTFLAGS="-C target-cpu=native"`, or `-C target-feature=+avx2`).
//!
//! Messages of different lengths are scheduled as jobs: a lane whose
//! message ends takes the next one at once, so a long message does not
//! hold the others back; the last message left alone finishes on the
//! single-stream code, which is faster than one busy lane of many.

use super::{INIT, K, digest_of, padding};

/// How many messages are hashed side by side.
pub(crate) const LANES: usize = if cfg!(target_feature = "avx512f") {
    16
} else {
    // 8 with AVX2 (one register); 8 on SSE2 and NEON too, two registers
    // of 4: a step's chain of dependent instructions is the limit at
    // one register, and two chains fill the wait (1.7x md-5 rather than
    // 1.5x at 4, on this project's development machine).
    8
};

/// A word of every lane.
type Words = [u32; LANES];

#[inline(always)]
fn ff(b: u32, c: u32, d: u32) -> u32 {
    d ^ (b & (c ^ d))
}
#[inline(always)]
fn gg(b: u32, c: u32, d: u32) -> u32 {
    c ^ (d & (b ^ c))
}
#[inline(always)]
fn hh(b: u32, c: u32, d: u32) -> u32 {
    b ^ c ^ d
}
#[inline(always)]
fn ii(b: u32, c: u32, d: u32) -> u32 {
    c ^ (b | !d)
}

/// One block of every lane: `state` holds a, b, c, d of each lane, `m`
/// the block's sixteen words of each lane.
#[inline(never)]
fn compress(state: &mut [Words; 4], m: &[Words; 16]) {
    for l in 0..LANES {
        let (mut a, mut b, mut c, mut d) = (state[0][l], state[1][l], state[2][l], state[3][l]);
        // `a = b + rotl(a + f(b, c, d) + m[g] + K[i], s)`: step `i` of 64.
        macro_rules! step {
            ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $g:literal, $s:literal, $i:literal) => {
                // `a + m + K` does not wait for the step before; `f` does.
                $a = $b.wrapping_add(
                    $a.wrapping_add(m[$g][l])
                        .wrapping_add(K[$i])
                        .wrapping_add($f($b, $c, $d))
                        .rotate_left($s),
                );
            };
        }
        step!(ff, a, b, c, d, 0, 7, 0);
        step!(ff, d, a, b, c, 1, 12, 1);
        step!(ff, c, d, a, b, 2, 17, 2);
        step!(ff, b, c, d, a, 3, 22, 3);
        step!(ff, a, b, c, d, 4, 7, 4);
        step!(ff, d, a, b, c, 5, 12, 5);
        step!(ff, c, d, a, b, 6, 17, 6);
        step!(ff, b, c, d, a, 7, 22, 7);
        step!(ff, a, b, c, d, 8, 7, 8);
        step!(ff, d, a, b, c, 9, 12, 9);
        step!(ff, c, d, a, b, 10, 17, 10);
        step!(ff, b, c, d, a, 11, 22, 11);
        step!(ff, a, b, c, d, 12, 7, 12);
        step!(ff, d, a, b, c, 13, 12, 13);
        step!(ff, c, d, a, b, 14, 17, 14);
        step!(ff, b, c, d, a, 15, 22, 15);
        step!(gg, a, b, c, d, 1, 5, 16);
        step!(gg, d, a, b, c, 6, 9, 17);
        step!(gg, c, d, a, b, 11, 14, 18);
        step!(gg, b, c, d, a, 0, 20, 19);
        step!(gg, a, b, c, d, 5, 5, 20);
        step!(gg, d, a, b, c, 10, 9, 21);
        step!(gg, c, d, a, b, 15, 14, 22);
        step!(gg, b, c, d, a, 4, 20, 23);
        step!(gg, a, b, c, d, 9, 5, 24);
        step!(gg, d, a, b, c, 14, 9, 25);
        step!(gg, c, d, a, b, 3, 14, 26);
        step!(gg, b, c, d, a, 8, 20, 27);
        step!(gg, a, b, c, d, 13, 5, 28);
        step!(gg, d, a, b, c, 2, 9, 29);
        step!(gg, c, d, a, b, 7, 14, 30);
        step!(gg, b, c, d, a, 12, 20, 31);
        step!(hh, a, b, c, d, 5, 4, 32);
        step!(hh, d, a, b, c, 8, 11, 33);
        step!(hh, c, d, a, b, 11, 16, 34);
        step!(hh, b, c, d, a, 14, 23, 35);
        step!(hh, a, b, c, d, 1, 4, 36);
        step!(hh, d, a, b, c, 4, 11, 37);
        step!(hh, c, d, a, b, 7, 16, 38);
        step!(hh, b, c, d, a, 10, 23, 39);
        step!(hh, a, b, c, d, 13, 4, 40);
        step!(hh, d, a, b, c, 0, 11, 41);
        step!(hh, c, d, a, b, 3, 16, 42);
        step!(hh, b, c, d, a, 6, 23, 43);
        step!(hh, a, b, c, d, 9, 4, 44);
        step!(hh, d, a, b, c, 12, 11, 45);
        step!(hh, c, d, a, b, 15, 16, 46);
        step!(hh, b, c, d, a, 2, 23, 47);
        step!(ii, a, b, c, d, 0, 6, 48);
        step!(ii, d, a, b, c, 7, 10, 49);
        step!(ii, c, d, a, b, 14, 15, 50);
        step!(ii, b, c, d, a, 5, 21, 51);
        step!(ii, a, b, c, d, 12, 6, 52);
        step!(ii, d, a, b, c, 3, 10, 53);
        step!(ii, c, d, a, b, 10, 15, 54);
        step!(ii, b, c, d, a, 1, 21, 55);
        step!(ii, a, b, c, d, 8, 6, 56);
        step!(ii, d, a, b, c, 15, 10, 57);
        step!(ii, c, d, a, b, 6, 15, 58);
        step!(ii, b, c, d, a, 13, 21, 59);
        step!(ii, a, b, c, d, 4, 6, 60);
        step!(ii, d, a, b, c, 11, 10, 61);
        step!(ii, c, d, a, b, 2, 15, 62);
        step!(ii, b, c, d, a, 9, 21, 63);
        state[0][l] = state[0][l].wrapping_add(a);
        state[1][l] = state[1][l].wrapping_add(b);
        state[2][l] = state[2][l].wrapping_add(c);
        state[3][l] = state[3][l].wrapping_add(d);
    }
}

/// A message in a lane: its whole blocks, then one or two blocks made of
/// the rest, 0x80, zeros and the length in bits.
struct Job<'a> {
    index: usize,
    data: &'a [u8],
    /// Blocks read so far.
    next: usize,
    whole: usize,
    blocks: usize,
    tail: [u8; 128],
}

impl<'a> Job<'a> {
    fn new(index: usize, data: &'a [u8]) -> Self {
        let whole = data.len() / 64;
        let mut job = Job {
            index,
            data,
            next: 0,
            whole,
            blocks: whole,
            tail: [0; 128],
        };
        job.blocks += padding(data, &mut job.tail) / 64;
        job
    }

    /// The next block's bytes.
    fn block(&self) -> &[u8] {
        let i = self.next;
        if i < self.whole {
            &self.data[i * 64..i * 64 + 64]
        } else {
            let at = (i - self.whole) * 64;
            &self.tail[at..at + 64]
        }
    }
}

/// The MD5 of every message: `done(index, digest)` for each `(index,
/// message)` of `messages`, in the order they finish (not the order given).
/// No heap: the lanes' state lives on the stack.
pub(crate) fn md5_each<'a>(
    messages: impl IntoIterator<Item = (usize, &'a [u8])>,
    mut done: impl FnMut(usize, [u8; 16]),
) {
    let mut messages = messages.into_iter();
    let mut jobs: [Option<Job<'a>>; LANES] = [const { None }; LANES];
    let mut state = [[0u32; LANES]; 4];
    let mut m = [[0u32; LANES]; 16];
    loop {
        for (l, job) in jobs.iter_mut().enumerate() {
            if job.is_none()
                && let Some((index, data)) = messages.next()
            {
                *job = Some(Job::new(index, data));
                for (s, v) in state.iter_mut().zip(INIT) {
                    s[l] = v;
                }
            }
        }
        let active = jobs.iter().filter(|j| j.is_some()).count();
        if active == 0 {
            return;
        }
        if alone(active)
            && let Some(last) = jobs.iter().rposition(Option::is_some)
            && let Some(job) = jobs[last].take()
        {
            let mut st = [state[0][last], state[1][last], state[2][last], state[3][last]];
            finish_alone(&mut st, &job);
            done(job.index, digest_of(st));
            continue;
        }
        for (l, job) in jobs.iter().enumerate() {
            if let Some(job) = job {
                for (w, b) in m.iter_mut().zip(job.block().chunks_exact(4)) {
                    w[l] = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        compress(&mut state, &m);
        for (l, slot) in jobs.iter_mut().enumerate() {
            if let Some(job) = slot {
                job.next += 1;
                if job.next == job.blocks {
                    let st = [state[0][l], state[1][l], state[2][l], state[3][l]];
                    done(job.index, digest_of(st));
                    *slot = None;
                }
            }
        }
    }
}

/// Whether the messages in the lanes are few enough for the last to finish
/// on the single-stream code, which is faster than one busy lane of many.
/// Speed only: a job finishes with the same digest either way.
fn alone(active: usize) -> bool {
    active == 1
}

/// The rest of `job`'s blocks on the single-stream code.
fn finish_alone(state: &mut [u32; 4], job: &Job<'_>) {
    let from = job.next.min(job.whole);
    let (whole, _) = job.data[from * 64..job.whole * 64].as_chunks::<64>();
    md5::block_api::compress(state, whole);
    let tail_blocks = job.blocks - job.whole;
    let skip = job.next.saturating_sub(job.whole);
    let (tail, _) = job.tail[skip * 64..tail_blocks * 64].as_chunks::<64>();
    md5::block_api::compress(state, tail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use std::vec::Vec;

    fn one_by_one(messages: &[&[u8]]) -> Vec<[u8; 16]> {
        messages.iter().map(|m| Md5::digest(m).into()).collect()
    }

    fn lanes(messages: &[&[u8]]) -> Vec<[u8; 16]> {
        let mut out = std::vec![[0u8; 16]; messages.len()];
        let mut seen = std::vec![false; messages.len()];
        md5_each(messages.iter().copied().enumerate(), |i, d| {
            assert!(!seen[i], "message {i} finished twice");
            seen[i] = true;
            out[i] = d;
        });
        assert!(seen.iter().all(|s| *s), "a message never finished");
        out
    }

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Every length across the paddings, in every lane: each length
    /// with a set of others of every length, so that each lane meets it.
    #[test]
    fn every_length_in_every_lane_agrees_with_the_crate() {
        let last = if cfg!(miri) { 70 } else { 300 };
        let data: Vec<Vec<u8>> = (0..=last).map(|n| bytes(n, n as u32)).collect();
        let all: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        assert_eq!(lanes(&all), one_by_one(&all));
        // Shifted by one each time, so every length lands in every lane.
        for shift in 0..LANES {
            let some: Vec<&[u8]> = all
                .iter()
                .skip(shift)
                .step_by(if cfg!(miri) { 7 } else { 1 })
                .copied()
                .collect();
            assert_eq!(lanes(&some), one_by_one(&some), "shift {shift}");
        }
    }

    /// Long messages, equal and ragged, one alone, none, and the same
    /// message in every lane.
    #[test]
    fn long_and_ragged_messages_agree_with_the_crate() {
        let long = if cfg!(miri) { 700 } else { 70_000 };
        let data: Vec<Vec<u8>> = (0..2 * LANES + 3)
            .map(|i| bytes(long - i * (long / 40), i as u32))
            .collect();
        let all: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        assert_eq!(lanes(&all), one_by_one(&all));
        assert_eq!(lanes(&all[..1]), one_by_one(&all[..1]));
        assert_eq!(lanes(&[]), Vec::<[u8; 16]>::new());
        let same = [all[0]; LANES + 1];
        assert_eq!(lanes(&same), one_by_one(&same));
        // One long among short ones: it finishes alone.
        let mut mixed: Vec<&[u8]> = std::vec![&all[0][..10]; 3 * LANES];
        mixed.insert(1, all[0]);
        assert_eq!(lanes(&mixed), one_by_one(&mixed));
    }
}
