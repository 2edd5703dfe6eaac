//! The producer's settings.

use super::*;

/// The largest user record a stream takes by default (1 MiB); streams
/// configured for large records take up to 10 MiB.
pub const DEFAULT_MAX_USER_RECORD_SIZE: usize = 1 << 20;

/// The producer's settings. The defaults are the KPL's where it has one.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub(crate) record_max_buffered_time: Duration,
    pub(crate) aggregation: bool,
    pub(crate) aggregation_max_size: usize,
    pub(crate) aggregation_max_count: usize,
    pub(crate) collection_max_count: usize,
    pub(crate) collection_max_size: usize,
    pub(crate) max_user_record_size: usize,
    pub(crate) rate_limit: u32,
    pub(crate) record_ttl: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_concurrency: usize,
    pub(crate) fail_if_throttled: bool,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) max_buffered_records: usize,
    pub(crate) preserve_order: bool,
    pub(crate) first_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            record_max_buffered_time: Duration::from_millis(100),
            aggregation: true,
            aggregation_max_size: 51_200,
            aggregation_max_count: u32::MAX as usize,
            collection_max_count: PUT_RECORDS_MAX_ENTRIES,
            collection_max_size: PUT_RECORDS_MAX_BYTES,
            max_user_record_size: DEFAULT_MAX_USER_RECORD_SIZE,
            rate_limit: 150,
            record_ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(6),
            max_concurrency: 24,
            fail_if_throttled: false,
            max_buffered_bytes: 64 << 20,
            max_buffered_records: 1 << 20,
            preserve_order: false,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $t:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $t) -> Self {
            self.$name = value;
            self
        }
    };
}

impl ProducerConfig {
    setter!(
        /// Longest a user record waits to be aggregated and collected before
        /// it is sent (KPL `RecordMaxBufferedTime`, 100 ms).
        record_max_buffered_time: Duration
    );
    setter!(
        /// Aggregate user records (KPL `AggregationEnabled`, on). Off, every
        /// user record is its own Kinesis record.
        aggregation: bool
    );
    setter!(
        /// Largest aggregate, counted as Kinesis counts (data plus outer
        /// partition key; KPL `AggregationMaxSize`, 51,200). A user record
        /// larger than this goes out on its own.
        aggregation_max_size: usize
    );
    setter!(
        /// Most user records in one aggregate (KPL `AggregationMaxCount`).
        aggregation_max_count: usize
    );
    setter!(
        /// Most Kinesis records in one PutRecords call (KPL
        /// `CollectionMaxCount`, 500, the API's limit).
        collection_max_count: usize
    );
    setter!(
        /// Most bytes (data plus partition keys) in one PutRecords call (KPL
        /// `CollectionMaxSize`, 5 MiB, the API's limit).
        collection_max_size: usize
    );
    setter!(
        /// Largest user record accepted by `put` (1 MiB; up to 10 MiB for
        /// streams configured for large records).
        max_user_record_size: usize
    );
    setter!(
        /// Per-shard rate limit in percent of the shard's 1 MiB/s and 1,000
        /// records/s (KPL `RateLimit`, 150: a little over, so that Kinesis
        /// itself does the last of the throttling).
        rate_limit: u32
    );
    setter!(
        /// How long a user record may wait for a successful put before it
        /// fails as expired (KPL `RecordTtl`, 30 s).
        record_ttl: Duration
    );
    setter!(
        /// How long one PutRecords call may take before it counts as failed
        /// and is retried (KPL `RequestTimeout`, 6 s).
        request_timeout: Duration
    );
    setter!(
        /// Most PutRecords calls in flight at once (KPL `MaxConnections`, 24).
        max_concurrency: usize
    );
    setter!(
        /// Fail a user record the first time Kinesis throttles it instead of
        /// retrying (KPL `FailIfThrottled`, off).
        fail_if_throttled: bool
    );
    setter!(
        /// Cap on the bytes of user records buffered or in flight: `put`
        /// waits and `try_put` refuses while it is reached (64 MiB).
        max_buffered_bytes: usize
    );
    setter!(
        /// Cap on the user records buffered or in flight (1,048,576).
        max_buffered_records: usize
    );
    setter!(
        /// Keep each partition key's records in order across retries: at
        /// most one Kinesis record per shard in flight, and a failed one is
        /// retried before anything after it is sent (off; the KPL cannot
        /// promise this). It costs throughput: see the README.
        preserve_order: bool
    );
    setter!(
        /// Backoff before a record's first retry, doubled per retry with full
        /// jitter (100 ms).
        first_backoff: Duration
    );
    setter!(
        /// Longest backoff between retries (5 s).
        max_backoff: Duration
    );

    pub(crate) fn check(&self) -> Result<(), ProducerError> {
        let bad = |what: &str| Err(ProducerError::Config(what.to_owned()));
        if !(crate::MIN_LIMIT..=crate::MAX_LIMIT).contains(&self.aggregation_max_size) {
            return bad("aggregation_max_size must be 30 to 10,485,760");
        }
        if self.aggregation_max_count == 0 {
            return bad("aggregation_max_count must be at least 1");
        }
        if !(1..=PUT_RECORDS_MAX_ENTRIES).contains(&self.collection_max_count) {
            return bad("collection_max_count must be 1 to 500");
        }
        if !(1..=PUT_RECORDS_MAX_BYTES).contains(&self.collection_max_size) {
            return bad("collection_max_size must be 1 to 5 MiB");
        }
        if !(1..=crate::MAX_LIMIT).contains(&self.max_user_record_size) {
            return bad("max_user_record_size must be 1 to 10 MiB");
        }
        if self.rate_limit == 0 || self.max_concurrency == 0 {
            return bad("rate_limit and max_concurrency must be at least 1");
        }
        if self.max_buffered_bytes < self.max_user_record_size + 256 || self.max_buffered_records == 0 {
            return bad(
                "max_buffered_bytes must hold the largest user record, max_buffered_records one record",
            );
        }
        if self.max_buffered_bytes > u32::MAX as usize >> 1
            || self.max_buffered_records > u32::MAX as usize >> 1
        {
            return bad("max_buffered_bytes and max_buffered_records must be below 2^31");
        }
        Ok(())
    }
}
