//! Which shard a GetRecords call reads: learned from the GetShardIterator
//! and GetRecords answers that pass through the proxy (each iterator, and
//! each `NextShardIterator`, names the shard it reads), and each stream's
//! shard ranges, read with ListShards when a shard is first met. An
//! iterator the proxy has not seen (made before it started, or through
//! another endpoint) reads as an unknown shard: its answer is deaggregated
//! without the range check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kinesis_agg::HashKeyRange;
use serde_json::{Value, json};

use super::upstream::Upstream;

/// Iterators remembered per generation: at most twice this many are held
/// (a real iterator is about 300 bytes: under 12 MiB).
const GENERATION: usize = 20_000;

/// A stream as a request names it: (`StreamName` or `StreamARN`, value).
pub(crate) type Stream = (&'static str, String);

/// A shard of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShardOf {
    pub(crate) stream: Arc<Stream>,
    pub(crate) shard: Arc<str>,
}

#[derive(Default)]
struct Generations {
    now: HashMap<String, ShardOf>,
    old: HashMap<String, ShardOf>,
}

/// What the proxy knows of shards.
#[derive(Default)]
pub(crate) struct Book {
    iterators: Mutex<Generations>,
    ranges: tokio::sync::Mutex<HashMap<Arc<Stream>, HashMap<String, HashKeyRange>>>,
}

/// The stream a request body names.
pub(crate) fn stream_in(request: &Value) -> Option<Stream> {
    if let Some(n) = request.get("StreamName").and_then(Value::as_str) {
        return Some(("StreamName", n.to_owned()));
    }
    request
        .get("StreamARN")
        .and_then(Value::as_str)
        .map(|a| ("StreamARN", a.to_owned()))
}

impl Book {
    /// `iterator` reads `shard`.
    pub(crate) fn learn(&self, iterator: &str, shard: ShardOf) {
        let mut g = self.iterators.lock().unwrap_or_else(|p| p.into_inner());
        if g.now.len() >= GENERATION {
            g.old = std::mem::take(&mut g.now);
        }
        g.now.insert(iterator.to_owned(), shard);
    }

    /// The shard `iterator` reads, when the proxy saw it made.
    pub(crate) fn shard_of(&self, iterator: &str) -> Option<ShardOf> {
        let g = self.iterators.lock().unwrap_or_else(|p| p.into_inner());
        g.now.get(iterator).or_else(|| g.old.get(iterator)).cloned()
    }

    /// The hash key range of `shard`, listing the stream's shards when it
    /// is not known yet. `None` when ListShards fails or does not list it.
    pub(crate) async fn range(&self, upstream: &Upstream, shard: &ShardOf) -> Option<HashKeyRange> {
        let mut ranges = self.ranges.lock().await;
        if let Some(r) = ranges.get(&shard.stream).and_then(|m| m.get(&*shard.shard)) {
            return Some(*r);
        }
        let listed = list(upstream, &shard.stream).await?;
        let r = listed.get(&*shard.shard).copied();
        ranges.insert(shard.stream.clone(), listed);
        r
    }
}

/// Every shard of `stream` and its range, by ListShards (every page).
async fn list(upstream: &Upstream, stream: &Stream) -> Option<HashMap<String, HashKeyRange>> {
    let mut out = HashMap::new();
    let mut request = json!({ stream.0: stream.1 });
    loop {
        let answer = upstream
            .call("ListShards", Bytes::from(request.to_string()))
            .await
            .ok()?;
        if !answer.status.is_success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&answer.body).ok()?;
        for s in v.get("Shards")?.as_array()? {
            let id = s.get("ShardId")?.as_str()?;
            let r = s.get("HashKeyRange")?;
            let start = kinesis_agg::parse_hash_key(r.get("StartingHashKey")?.as_str()?).ok()?;
            let end = kinesis_agg::parse_hash_key(r.get("EndingHashKey")?.as_str()?).ok()?;
            out.insert(id.to_owned(), HashKeyRange::new(start, end)?);
        }
        match v.get("NextToken").and_then(Value::as_str) {
            Some(t) => request = json!({ "NextToken": t }),
            None => return Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(n: &str) -> ShardOf {
        ShardOf {
            stream: Arc::new(("StreamName", "s".to_owned())),
            shard: Arc::from(n),
        }
    }

    #[test]
    fn iterators_are_remembered_for_two_generations_and_no_longer() {
        let book = Book::default();
        book.learn("first", shard("a"));
        for i in 0..GENERATION {
            book.learn(&format!("it-{i}"), shard("b"));
        }
        assert_eq!(book.shard_of("first"), Some(shard("a")));
        assert_eq!(book.shard_of("it-7"), Some(shard("b")));
        for i in 0..GENERATION {
            book.learn(&format!("later-{i}"), shard("c"));
        }
        assert_eq!(book.shard_of("first"), None);
        assert_eq!(book.shard_of("later-1"), Some(shard("c")));
        assert_eq!(book.shard_of("unknown"), None);
    }

    #[test]
    fn a_request_names_its_stream_by_name_or_arn() {
        assert_eq!(
            stream_in(&json!({"StreamName": "s", "ShardId": "x"})),
            Some(("StreamName", "s".to_owned()))
        );
        assert_eq!(
            stream_in(&json!({"StreamARN": "arn:aws:kinesis:r:1:stream/s"})),
            Some(("StreamARN", "arn:aws:kinesis:r:1:stream/s".to_owned()))
        );
        assert_eq!(stream_in(&json!({})), None);
    }
}
