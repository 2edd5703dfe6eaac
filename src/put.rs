//! The PutRecords call's limits, and packing entries into calls within
//! them. No SDK and no heap: the CLI, the `aws-sdk` helpers and any other
//! client count the same way.

use crate::limits::{PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES};

/// Packs entries, in order, into PutRecords calls of at most
/// [`PUT_RECORDS_MAX_ENTRIES`] entries and [`PUT_RECORDS_MAX_BYTES`] bytes.
///
/// Offer each entry's size with [`push`](Self::push): it answers whether
/// the entry still goes into the call being packed or the call must be sent
/// first. An entry larger than the byte limit on its own gets a call of its
/// own (Kinesis then rejects it; nothing here drops it).
///
/// # Examples
/// ```
/// use kinesis_agg::{Batch, PutRecordsBatcher};
/// let mut calls = vec![Vec::new()];
/// let mut b = PutRecordsBatcher::new();
/// for i in 0..1200 {
///     if b.push(1000) == Batch::SendFirst {
///         calls.push(Vec::new());
///     }
///     calls.last_mut().unwrap().push(i);
/// }
/// assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 200]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PutRecordsBatcher {
    entries: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

/// Where an entry offered to [`PutRecordsBatcher::push`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Batch {
    /// Into the call being packed.
    Same,
    /// Send the call packed so far first: the entry starts the next one.
    SendFirst,
}

impl Default for PutRecordsBatcher {
    fn default() -> Self {
        PutRecordsBatcher::new()
    }
}

impl PutRecordsBatcher {
    /// A batcher with the PutRecords limits.
    pub const fn new() -> Self {
        PutRecordsBatcher::with_limits(PUT_RECORDS_MAX_ENTRIES, PUT_RECORDS_MAX_BYTES)
    }

    /// A batcher with smaller limits (smaller calls, or a proxy's limits).
    /// A limit of 0 is taken as 1.
    pub const fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        PutRecordsBatcher {
            entries: 0,
            bytes: 0,
            max_entries: if max_entries == 0 { 1 } else { max_entries },
            max_bytes: if max_bytes == 0 { 1 } else { max_bytes },
        }
    }

    /// Counts an entry of `size` bytes (data plus partition key) and says
    /// whether the call packed so far must be sent before it.
    pub fn push(&mut self, size: usize) -> Batch {
        let fits = self.entries < self.max_entries && self.bytes.saturating_add(size) <= self.max_bytes;
        if self.entries == 0 || fits {
            self.entries += 1;
            self.bytes = self.bytes.saturating_add(size);
            Batch::Same
        } else {
            self.entries = 1;
            self.bytes = size;
            Batch::SendFirst
        }
    }

    /// Entries in the call being packed.
    pub const fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes in the call being packed.
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Starts over with an empty call (after sending the last one).
    pub fn clear(&mut self) {
        self.entries = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_exactly_the_byte_limit() {
        let mut b = PutRecordsBatcher::with_limits(10, 100);
        assert_eq!(b.push(60), Batch::Same);
        assert_eq!(b.push(40), Batch::Same);
        assert_eq!((b.entries(), b.bytes()), (2, 100));
        assert_eq!(b.push(1), Batch::SendFirst);
        assert_eq!((b.entries(), b.bytes()), (1, 1));
    }

    #[test]
    fn cuts_at_exactly_the_entry_limit() {
        let mut b = PutRecordsBatcher::with_limits(3, 1000);
        assert_eq!([b.push(1), b.push(1), b.push(1)], [Batch::Same; 3]);
        assert_eq!(b.push(1), Batch::SendFirst);
        assert_eq!(b.entries(), 1);
    }

    #[test]
    fn an_oversized_entry_gets_a_call_of_its_own() {
        let mut b = PutRecordsBatcher::with_limits(10, 100);
        assert_eq!(b.push(500), Batch::Same);
        assert_eq!(b.push(1), Batch::SendFirst);
        assert_eq!(b.push(500), Batch::SendFirst);
        b.clear();
        assert_eq!((b.entries(), b.bytes()), (0, 0));
        assert_eq!(b.push(500), Batch::Same);
    }

    #[test]
    fn defaults_are_the_api_limits() {
        let mut b = PutRecordsBatcher::default();
        for _ in 0..500 {
            assert_eq!(b.push(0), Batch::Same);
        }
        assert_eq!(b.push(0), Batch::SendFirst);
        let mut b = PutRecordsBatcher::new();
        assert_eq!(b.push(PUT_RECORDS_MAX_BYTES), Batch::Same);
        assert_eq!(b.push(1), Batch::SendFirst);
    }
}
