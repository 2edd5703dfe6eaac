//! The MD5 of the format's trailer and of partition keys.
//!
//! Hosted targets use the `md-5` crate (unrolled rounds, the fastest
//! portable code). Bare-metal targets (`target_os = "none"`) use the
//! compact loop below: the same digest in about a quarter of the flash,
//! which a microcontroller counts before speed.

/// MD5 of `data`.
#[inline]
pub(crate) fn md5(data: &[u8]) -> [u8; 16] {
    #[cfg(not(target_os = "none"))]
    {
        use md5::{Digest, Md5};
        Md5::digest(data).into()
    }
    #[cfg(target_os = "none")]
    {
        md5_compact(data)
    }
}

/// The sines table: `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Left rotations: four per round.
const S: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

/// MD5 (RFC 1321) in one loop of 64 steps.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn md5_compact(data: &[u8]) -> [u8; 16] {
    let mut state = [0x6745_2301u32, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        compress(&mut state, block);
    }
    // The rest, 0x80, zeros, then the length in bits: one or two blocks.
    let rest = blocks.remainder();
    let mut last = [0u8; 128];
    last[..rest.len()].copy_from_slice(rest);
    last[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64).wrapping_mul(8);
    last[end - 8..end].copy_from_slice(&bits.to_le_bytes());
    for block in last[..end].chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut out = [0u8; 16];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_le_bytes());
    }
    out
}

fn compress(state: &mut [u32; 4], block: &[u8]) {
    let mut m = [0u32; 16];
    for (w, b) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for (i, k) in K.iter().enumerate() {
        let (f, g) = match i / 16 {
            // F and G as selections: (b & c) | (!b & d), (d & b) | (!d & c).
            0 => (d ^ (b & (c ^ d)), i),
            1 => (c ^ (d & (b ^ c)), 5 * i + 1),
            2 => (b ^ c ^ d, 3 * i + 5),
            _ => (c ^ (b | !d), 7 * i),
        };
        let f = f.wrapping_add(a).wrapping_add(*k).wrapping_add(m[g % 16]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(f.rotate_left(S[(i / 16) * 4 + i % 4]));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// Two MD5s at once, for aggregates completed in numbers
/// ([`Aggregate::digest_pair`](crate::Aggregate::digest_pair)).
#[cfg(feature = "alloc")]
pub(crate) use pair::md5_pair;

#[cfg(feature = "alloc")]
mod pair {
    use super::{K, S};

    /// The message indexes of the four rounds' steps.
    const fn g(i: usize) -> usize {
        match i / 16 {
            0 => i,
            1 => (5 * i + 1) % 16,
            2 => (3 * i + 5) % 16,
            _ => (7 * i) % 16,
        }
    }

    /// A message's 64-byte blocks as MD5 reads them: its whole blocks, then
    /// one or two made of the rest, 0x80, zeros and the length in bits.
    struct Padded<'a> {
        data: &'a [u8],
        whole: usize,
        tail: [u8; 128],
        blocks: usize,
    }

    impl<'a> Padded<'a> {
        fn new(data: &'a [u8]) -> Self {
            let whole = data.len() / 64;
            let rest = &data[whole * 64..];
            let mut tail = [0u8; 128];
            tail[..rest.len()].copy_from_slice(rest);
            tail[rest.len()] = 0x80;
            let end = if rest.len() < 56 { 64 } else { 128 };
            tail[end - 8..end].copy_from_slice(&(data.len() as u64).wrapping_mul(8).to_le_bytes());
            Padded {
                data,
                whole,
                tail,
                blocks: whole + end / 64,
            }
        }

        fn words(&self, i: usize) -> [u32; 16] {
            let block = if i < self.whole {
                &self.data[i * 64..i * 64 + 64]
            } else {
                &self.tail[(i - self.whole) * 64..(i - self.whole) * 64 + 64]
            };
            let mut m = [0u32; 16];
            for (w, b) in m.iter_mut().zip(block.chunks_exact(4)) {
                *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            m
        }
    }

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

    /// One MD5 step on each lane: `a = b + rotl(a + f(b, c, d) + m + k, s)`.
    macro_rules! step {
        ($f:ident, $i:expr, $m:ident, $a:ident, $b:ident, $c:ident, $d:ident) => {
            $a = $b.wrapping_add(
                $a.wrapping_add($f($b, $c, $d))
                    .wrapping_add($m[g($i)])
                    .wrapping_add(K[$i])
                    .rotate_left(S[($i / 16) * 4 + $i % 4]),
            );
        };
    }

    /// The 64 steps over any number of lanes, each lane's steps side by side
    /// so that the processor works on one while another waits.
    macro_rules! rounds {
        ($(($m:ident, $a:ident, $b:ident, $c:ident, $d:ident)),+) => {
            let mut i = 0;
            while i < 64 {
                match i / 16 {
                    0 => {
                        $( step!(ff, i, $m, $a, $b, $c, $d); )+
                        $( step!(ff, i + 1, $m, $d, $a, $b, $c); )+
                        $( step!(ff, i + 2, $m, $c, $d, $a, $b); )+
                        $( step!(ff, i + 3, $m, $b, $c, $d, $a); )+
                    }
                    1 => {
                        $( step!(gg, i, $m, $a, $b, $c, $d); )+
                        $( step!(gg, i + 1, $m, $d, $a, $b, $c); )+
                        $( step!(gg, i + 2, $m, $c, $d, $a, $b); )+
                        $( step!(gg, i + 3, $m, $b, $c, $d, $a); )+
                    }
                    2 => {
                        $( step!(hh, i, $m, $a, $b, $c, $d); )+
                        $( step!(hh, i + 1, $m, $d, $a, $b, $c); )+
                        $( step!(hh, i + 2, $m, $c, $d, $a, $b); )+
                        $( step!(hh, i + 3, $m, $b, $c, $d, $a); )+
                    }
                    _ => {
                        $( step!(ii, i, $m, $a, $b, $c, $d); )+
                        $( step!(ii, i + 1, $m, $d, $a, $b, $c); )+
                        $( step!(ii, i + 2, $m, $c, $d, $a, $b); )+
                        $( step!(ii, i + 3, $m, $b, $c, $d, $a); )+
                    }
                }
                i += 4;
            }
        };
    }

    fn compress_one(st: &mut [u32; 4], m: &[u32; 16]) {
        let [mut a, mut b, mut c, mut d] = *st;
        rounds!((m, a, b, c, d));
        for (s, v) in st.iter_mut().zip([a, b, c, d]) {
            *s = s.wrapping_add(v);
        }
    }

    fn compress_two(s1: &mut [u32; 4], m1: &[u32; 16], s2: &mut [u32; 4], m2: &[u32; 16]) {
        let [mut a1, mut b1, mut c1, mut d1] = *s1;
        let [mut a2, mut b2, mut c2, mut d2] = *s2;
        rounds!((m1, a1, b1, c1, d1), (m2, a2, b2, c2, d2));
        for (s, v) in s1.iter_mut().zip([a1, b1, c1, d1]) {
            *s = s.wrapping_add(v);
        }
        for (s, v) in s2.iter_mut().zip([a2, b2, c2, d2]) {
            *s = s.wrapping_add(v);
        }
    }

    fn digest_of(state: [u32; 4]) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (o, s) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// The MD5s of two messages, computed together: their blocks side by
    /// side as long as both have one (each step of one lane fills the wait
    /// on the other's), then the rest of the longer alone.
    pub(crate) fn md5_pair(x: &[u8], y: &[u8]) -> ([u8; 16], [u8; 16]) {
        const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
        let (px, py) = (Padded::new(x), Padded::new(y));
        let (mut sx, mut sy) = (INIT, INIT);
        let both = px.blocks.min(py.blocks);
        for i in 0..both {
            compress_two(&mut sx, &px.words(i), &mut sy, &py.words(i));
        }
        for i in both..px.blocks {
            compress_one(&mut sx, &px.words(i));
        }
        for i in both..py.blocks {
            compress_one(&mut sy, &py.words(i));
        }
        (digest_of(sx), digest_of(sy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    /// RFC 1321's test suite.
    #[test]
    fn compact_md5_gives_the_rfc_digests() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            let got: std::string::String = md5_compact(input)
                .iter()
                .map(|b| std::format!("{b:02x}"))
                .collect();
            assert_eq!(got, want);
        }
    }

    /// Every length across the one- and two-block paddings, and long
    /// inputs: the compact loop and the crate agree byte for byte.
    #[test]
    fn compact_md5_agrees_with_the_crate() {
        let data: std::vec::Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Under Miri, the lengths around the paddings only.
        let long: &[usize] = if cfg!(miri) {
            &[]
        } else {
            &[511, 512, 513, 1000, 4096, 5000]
        };
        let last = if cfg!(miri) { 130 } else { 300 };
        for n in (0..=last).chain(long.iter().copied()) {
            let want: [u8; 16] = Md5::digest(&data[..n]).into();
            assert_eq!(md5_compact(&data[..n]), want, "length {n}");
            assert_eq!(md5(&data[..n]), want, "length {n}");
        }
    }

    #[cfg(feature = "alloc")]
    /// The pair against the crate: every pair of lengths across the
    /// paddings (whole blocks side by side, then the longer alone), equal
    /// and unequal, and long ones.
    #[test]
    fn md5_pair_agrees_with_the_crate() {
        let data: std::vec::Vec<u8> = (0..9000u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect();
        let other: std::vec::Vec<u8> = data.iter().rev().map(|b| b ^ 0x5a).collect();
        let md5 = |d: &[u8]| -> [u8; 16] { Md5::digest(d).into() };
        let step = if cfg!(miri) { 37 } else { 1 };
        for n in (0..=200).step_by(step) {
            for m in (0..=200).step_by(if cfg!(miri) { 41 } else { 7 }) {
                let (a, b) = md5_pair(&data[..n], &other[..m]);
                assert_eq!((a, b), (md5(&data[..n]), md5(&other[..m])), "lengths {n}, {m}");
            }
        }
        let long: &[(usize, usize)] = if cfg!(miri) {
            &[(1000, 999)]
        } else {
            &[
                (9000, 9000),
                (9000, 8999),
                (5, 9000),
                (8191, 4096),
                (4096, 8191),
                (6000, 0),
            ]
        };
        for &(n, m) in long {
            let (a, b) = md5_pair(&data[..n], &other[..m]);
            assert_eq!((a, b), (md5(&data[..n]), md5(&other[..m])), "lengths {n}, {m}");
        }
        // The same message twice.
        assert_eq!(md5_pair(&data, &data), (md5(&data), md5(&data)));
    }
}
