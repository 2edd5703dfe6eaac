//! The producer's settings.

use super::*;

/// The largest user record a stream takes by default
/// ([`DEFAULT_LIMIT`](crate::DEFAULT_LIMIT), 1 MiB); streams configured for
/// large records take up to [`MAX_LIMIT`](crate::MAX_LIMIT), 10 MiB.
pub const DEFAULT_MAX_USER_RECORD_SIZE: usize = crate::DEFAULT_LIMIT;

macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident: $t:ty = $default:expr; )*) => {
        /// The producer's settings. The defaults are the KPL's where it has one.
        ///
        /// Each setting is a public field, to read (a command line shows
        /// the defaults of `ProducerConfig::default()`), with a setter of
        /// the same name to build with; [`Producer::new`] checks them.
        ///
        /// # Examples
        /// ```
        /// use std::time::Duration;
        /// use kinesis_agg::producer::ProducerConfig;
        /// let cfg = ProducerConfig::default().record_ttl(Duration::from_secs(10));
        /// assert_eq!(cfg.record_ttl, Duration::from_secs(10));
        /// assert_eq!(cfg.aggregation_max_size, 51_200);
        /// ```
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        pub struct ProducerConfig {
            $( $(#[$doc])* pub $name: $t, )*
        }

        impl Default for ProducerConfig {
            fn default() -> Self {
                ProducerConfig { $( $name: $default, )* }
            }
        }

        impl ProducerConfig {
            $(
                #[doc = concat!("Sets [`", stringify!($name), "`](#structfield.", stringify!($name), ").")]
                #[must_use]
                pub fn $name(mut self, value: $t) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

settings! {
    /// Longest a user record waits to be aggregated and collected before
    /// it is sent (KPL `RecordMaxBufferedTime`, 100 ms). Each shard's
    /// aggregates close at their own moments of this period, the shards
    /// spread over it (a moment every 10 ms or so), so that under load
    /// they do not all fall due together: an aggregate that opens as
    /// another closes waits the whole time; the first after a pause may
    /// go sooner.
    record_max_buffered_time: Duration = Duration::from_millis(100);
    /// Aggregate user records (KPL `AggregationEnabled`, on). Off, every
    /// user record is its own Kinesis record.
    aggregation: bool = true;
    /// Largest aggregate, counted as Kinesis counts (data plus outer
    /// partition key; KPL `AggregationMaxSize`, 51,200; [`MIN_LIMIT`](crate::MIN_LIMIT)
    /// to [`MAX_LIMIT`](crate::MAX_LIMIT)). A user record larger than this
    /// goes out on its own.
    aggregation_max_size: usize = 51_200;
    /// Most user records in one aggregate (KPL `AggregationMaxCount`,
    /// 4,294,967,295).
    aggregation_max_count: usize = u32::MAX as usize;
    /// Most Kinesis records in one PutRecords call (KPL
    /// `CollectionMaxCount`, 500, the API's limit).
    collection_max_count: usize = PUT_RECORDS_MAX_ENTRIES;
    /// Most bytes (data plus partition keys) in one PutRecords call (KPL
    /// `CollectionMaxSize`, 5 MiB, the API's limit).
    collection_max_size: usize = PUT_RECORDS_MAX_BYTES;
    /// Largest user record's data accepted by `put`
    /// ([`DEFAULT_MAX_USER_RECORD_SIZE`], 1 MiB; up to 10 MiB for streams
    /// configured for large records).
    max_user_record_size: usize = DEFAULT_MAX_USER_RECORD_SIZE;
    /// Per-shard rate limit in percent of the shard's 1 MiB/s and 1,000
    /// records/s (KPL `RateLimit`, 150: a little over, so that Kinesis
    /// itself does the last of the throttling).
    rate_limit: u32 = 150;
    /// How long a user record may wait for a successful put before it
    /// fails as expired (KPL `RecordTtl`, 30 s).
    record_ttl: Duration = Duration::from_secs(30);
    /// How long one PutRecords call may take before it counts as failed
    /// and is retried (KPL `RequestTimeout`, 6 s).
    request_timeout: Duration = Duration::from_secs(6);
    /// Most PutRecords calls in flight at once (KPL `MaxConnections`, 24).
    max_concurrency: usize = 24;
    /// Fail a user record the first time Kinesis throttles it instead of
    /// retrying (KPL `FailIfThrottled`, off).
    fail_if_throttled: bool = false;
    /// Cap on the bytes of user records buffered or in flight: `put`
    /// waits and `try_put` refuses while it is reached (64 MiB). It must
    /// hold the largest user record and 256 bytes more.
    max_buffered_bytes: usize = 64 << 20;
    /// Cap on the user records buffered or in flight (1,048,576).
    max_buffered_records: usize = 1 << 20;
    /// Keep each partition key's records in order across retries: at
    /// most one Kinesis record per shard in flight, and a failed one is
    /// retried before anything after it is sent (off; the KPL cannot
    /// promise this). It costs throughput: see the README.
    preserve_order: bool = false;
    /// Backoff before a record's first retry, doubled per retry with full
    /// jitter (100 ms).
    first_backoff: Duration = Duration::from_millis(100);
    /// Longest backoff between retries (5 s).
    max_backoff: Duration = Duration::from_secs(5);
}

/// A producer setting outside what it may be.
///
/// # Examples
/// ```
/// use kinesis_agg::producer::{ConfigError, ProducerConfig};
/// let err = ProducerConfig::default().collection_max_count(501).check().unwrap_err();
/// assert_eq!((err.setting, err.value, err.min, err.max), ("collection_max_count", 501, 1, 500));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, named as its field and setter.
    pub setting: &'static str,
    /// The value given.
    pub value: u64,
    /// The smallest value it may take (with the other settings as they are).
    pub min: u64,
    /// The largest.
    pub max: u64,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, outside {}..={}",
            self.setting, self.value, self.min, self.max
        )
    }
}

impl std::error::Error for ConfigError {}

impl ProducerConfig {
    /// Checks every setting against its range, as [`Producer::new`] does.
    ///
    /// # Errors
    /// The first setting out of range.
    pub fn check(&self) -> Result<(), ConfigError> {
        /// Below 2^31: the caps count in 32-bit permits.
        const CAP_MAX: u64 = (u32::MAX >> 1) as u64;
        let size = |n: usize| n as u64;
        let in_range = |setting: &'static str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError {
                    setting,
                    value,
                    min,
                    max,
                })
            }
        };
        in_range(
            "aggregation_max_size",
            size(self.aggregation_max_size),
            size(crate::MIN_LIMIT),
            size(crate::MAX_LIMIT),
        )?;
        in_range(
            "aggregation_max_count",
            size(self.aggregation_max_count),
            1,
            u64::MAX,
        )?;
        in_range(
            "collection_max_count",
            size(self.collection_max_count),
            1,
            size(PUT_RECORDS_MAX_ENTRIES),
        )?;
        in_range(
            "collection_max_size",
            size(self.collection_max_size),
            1,
            size(PUT_RECORDS_MAX_BYTES),
        )?;
        in_range(
            "max_user_record_size",
            size(self.max_user_record_size),
            1,
            size(crate::MAX_LIMIT),
        )?;
        in_range("rate_limit", u64::from(self.rate_limit), 1, u64::from(u32::MAX))?;
        in_range("max_concurrency", size(self.max_concurrency), 1, size(usize::MAX))?;
        in_range(
            "max_buffered_bytes",
            size(self.max_buffered_bytes),
            size(self.max_user_record_size) + 256,
            CAP_MAX,
        )?;
        in_range(
            "max_buffered_records",
            size(self.max_buffered_records),
            1,
            CAP_MAX,
        )?;
        Ok(())
    }
}
