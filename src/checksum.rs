//! The MD5 of the format's trailer and of partition keys.
//!
//! Hosted targets use the `md-5` crate (unrolled rounds, the fastest
//! portable code). Bare-metal targets (`target_os = "none"`) use the
//! compact loop below: the same digest in about a quarter of the flash,
//! which a microcontroller counts before speed.
//!
//! Independent messages are hashed side by side in SIMD lanes (`lanes`)
//! where the target has vectors: not on bare metal, and not on WebAssembly
//! without `simd128`, where lanes of scalars run no faster than one
//! message after another and only add code.

#[cfg(not(any(
    target_os = "none",
    all(target_arch = "wasm32", not(target_feature = "simd128"))
)))]
mod lanes;
#[cfg(not(any(
    target_os = "none",
    all(target_arch = "wasm32", not(target_feature = "simd128"))
)))]
pub(crate) use lanes::{LANES, md5_each};

/// One message at a time where there are no vectors.
#[cfg(any(
    target_os = "none",
    all(target_arch = "wasm32", not(target_feature = "simd128"))
))]
pub(crate) const LANES: usize = 1;

/// MD5 of every message, one at a time (bare metal: the compact loop,
/// whose flash a microcontroller counts before speed; WebAssembly without
/// vectors: `md-5`).
#[cfg(any(
    target_os = "none",
    all(target_arch = "wasm32", not(target_feature = "simd128"))
))]
pub(crate) fn md5_each<'a>(
    messages: impl IntoIterator<Item = (usize, &'a [u8])>,
    mut done: impl FnMut(usize, [u8; 16]),
) {
    for (i, m) in messages {
        done(i, md5(m));
    }
}

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
    let mut state = INIT;
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        compress(&mut state, block);
    }
    let mut last = [0u8; 128];
    let end = padding(data, &mut last);
    for block in last[..end].chunks_exact(64) {
        compress(&mut state, block);
    }
    digest_of(state)
}

/// MD5's initial state.
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Writes into `last` (zeroed) the last block or two of `data` as MD5 reads
/// them: the bytes after its whole 64-byte blocks, 0x80, zeros, then the
/// length in bits; returns how many of the 128 bytes they take (64 or
/// 128). In place, so that no 128-byte copy is made (bare metal links no
/// `memcpy` for it).
fn padding(data: &[u8], last: &mut [u8; 128]) -> usize {
    let rest = &data[data.len() / 64 * 64..];
    last[..rest.len()].copy_from_slice(rest);
    last[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64).wrapping_mul(8);
    last[end - 8..end].copy_from_slice(&bits.to_le_bytes());
    end
}

/// The digest of a final state: its words, little-endian.
fn digest_of(state: [u32; 4]) -> [u8; 16] {
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
}
