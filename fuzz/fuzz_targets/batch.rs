//! A list of blobs read as a batch (checksums side by side) against each
//! blob read alone: the same envelope, outcome, records, errors and
//! offsets, under every policy. Input: a flag byte (bit 0: write each
//! blob's correct MD5 trailer, so that bodies get read), then blobs, each
//! a little-endian u16 length and its bytes (the last takes what is left).
#![no_main]

use kinesis_agg::{Checksum, Options, Verified};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|input: &[u8]| {
    let Some((&flags, mut rest)) = input.split_first() else {
        return;
    };
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    while !rest.is_empty() && blobs.len() < 64 {
        let (n, tail) = match rest {
            [a, b, tail @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), tail),
            _ => (rest.len(), &[][..]),
        };
        let n = n.min(tail.len());
        let mut blob = tail[..n].to_vec();
        if flags & 1 == 1 && blob.len() > 20 {
            let end = blob.len() - 16;
            let digest = Md5::digest(&blob[4..end]);
            blob[end..].copy_from_slice(&digest);
        }
        blobs.push(blob);
        rest = &tail[n..];
    }
    let views: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    for opts in [
        Options::new(),
        Options::new().checksum(Checksum::Strict),
        Options::new().checksum(Checksum::Skip),
    ] {
        let batch = opts.verify_all(&views);
        assert_eq!(batch.len(), views.len());
        for (v, b) in batch.iter().zip(&views) {
            assert_eq!(v.blob(), *b);
            assert_eq!(v.envelope(), opts.envelope(b));
            let (got, want) = (v.deaggregate(), opts.deaggregate(b));
            assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
        // The no-heap form over a smaller room reads what fits.
        let mut room = [Verified::default(); 3];
        let n = opts.verify_into(&views, &mut room);
        assert_eq!(n, views.len().min(3));
        assert_eq!(&room[..n], &batch[..n]);
    }
});
