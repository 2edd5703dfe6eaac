//! Pauses between attempts: exponential backoff with full jitter, the one
//! rule every retry of the crate follows (`sdk::put_all`,
//! `sdk::retry_transient`, the producer's records and its shard map).

use core::time::Duration;

/// Exponential backoff: the pause before the `n`-th retry is at most
/// `first * 2^(n-1)`, and never more than `max`. With jitter ("full
/// jitter", as the AWS SDKs draw it), the pause is drawn uniformly from
/// zero to that cap, so that many clients throttled together do not come
/// back together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The longest pause before retry `retry` (1 for the first retry).
    pub(crate) fn cap(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// A pause before retry `retry`, drawn from `0..=cap(retry)`.
    pub(crate) fn pause(&self, retry: u32, jitter: &mut Jitter) -> Duration {
        let cap = u64::try_from(self.cap(retry).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(jitter.below(cap.saturating_add(1)))
    }
}

/// A small xorshift generator for jitter: fast, and not for anything that
/// must not be guessed.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// A generator seeded with `seed` (0 is taken as 1: xorshift needs a
    /// bit set).
    pub(crate) const fn new(seed: u64) -> Self {
        Jitter(if seed == 0 { 1 } else { seed })
    }

    /// A generator seeded from the clock and an address, so that
    /// processes and tasks started together draw differently.
    #[cfg(feature = "std")]
    pub(crate) fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let here = 0u8;
        let place = core::ptr::addr_of!(here) as usize as u64;
        Jitter::new(nanos ^ place.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_doubles_from_the_first_pause_up_to_the_most() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let caps: [u64; 8] = core::array::from_fn(|i| b.cap(i as u32 + 1).as_millis() as u64);
        assert_eq!(caps, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // Retry 0 is taken as the first; a huge count does not overflow.
        assert_eq!(b.cap(0), Duration::from_millis(100));
        assert_eq!(b.cap(u32::MAX), Duration::from_secs(5));
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.cap(40), Duration::MAX);
    }

    /// Full jitter: every pause lies within its cap, and the pauses spread
    /// over the whole of it rather than bunching at one end.
    #[test]
    fn pauses_are_drawn_from_zero_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let mut j = Jitter::new(7);
        for retry in 1..8 {
            let cap = b.cap(retry);
            let pauses: std::vec::Vec<Duration> = (0..400).map(|_| b.pause(retry, &mut j)).collect();
            assert!(pauses.iter().all(|p| *p <= cap), "retry {retry}");
            let low = pauses.iter().filter(|p| **p < cap / 4).count();
            let high = pauses.iter().filter(|p| **p > cap * 3 / 4).count();
            assert!(
                low > 50 && high > 50,
                "retry {retry}: {low} low, {high} high of 400"
            );
        }
        let none = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(none.pause(3, &mut j), Duration::ZERO);
    }

    #[test]
    fn a_zero_seed_still_draws() {
        let mut j = Jitter::new(0);
        let first = j.next_u64();
        assert_ne!(first, 0);
        assert_ne!(j.next_u64(), first);
        assert_eq!(j.below(0), 0);
    }
}
