//! Automatic persisted queries, as Apollo Client and urql speak them: a client sends only the
//! SHA-256 of its query (`extensions.persistedQuery.sha256Hash`); when the server does not
//! know it, the answer is `PersistedQueryNotFound` (`PERSISTED_QUERY_NOT_FOUND`) and the client
//! sends the query once with its hash, which registers it.
//!
//! The cache is bounded twice: by entries (`HOOKLINE_APQ_CACHE`) and by the bytes of the
//! queries it holds, the least recently used going first. A query is registered only by a
//! caller with a valid token (the request is authenticated before it reaches the schema).

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Request, ServerError, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
};
use sha2::{Digest, Sha256};

use crate::domain::signing::hex;

/// The most query text the cache holds, whatever its entry count.
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The registered queries of this process, by the hex SHA-256 of their text.
#[derive(Clone)]
pub struct PersistedQueries {
    cache: Arc<Mutex<Cache>>,
}

struct Cache {
    queries: lru::LruCache<String, Arc<str>>,
    bytes: usize,
    max_bytes: usize,
}

impl PersistedQueries {
    /// A cache of at most `entries` queries (at least one).
    pub fn new(entries: usize) -> Self {
        Self::bounded(entries, MAX_BYTES)
    }

    fn bounded(entries: usize, max_bytes: usize) -> Self {
        let entries = NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN);
        let cache = Cache { queries: lru::LruCache::new(entries), bytes: 0, max_bytes };
        Self { cache: Arc::new(Mutex::new(cache)) }
    }

    fn get(&self, hash: &str) -> Option<Arc<str>> {
        self.lock().queries.get(hash).cloned()
    }

    fn put(&self, hash: String, query: Arc<str>) {
        let mut cache = self.lock();
        if query.len() > cache.max_bytes {
            return;
        }
        if let Some(old) = cache.queries.pop(&hash) {
            cache.bytes -= old.len();
        }
        while cache.bytes + query.len() > cache.max_bytes {
            let Some((_, evicted)) = cache.queries.pop_lru() else { break };
            cache.bytes -= evicted.len();
        }
        cache.bytes += query.len();
        if let Some((_, evicted)) = cache.queries.push(hash, query) {
            cache.bytes -= evicted.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic elsewhere could break halfway.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request with its query filled in from the cache, or registered in it.
    fn resolve(&self, mut request: Request) -> ServerResult<Request> {
        let Some(value) = request.extensions.remove("persistedQuery") else { return Ok(request) };
        let json = value.into_json().map_err(|_| refused("VALIDATION", MALFORMED.into()))?;
        let version = json.get("version").and_then(serde_json::Value::as_i64);
        let hash = json.get("sha256Hash").and_then(serde_json::Value::as_str);
        let (Some(version), Some(hash)) = (version, hash) else {
            return Err(refused("VALIDATION", MALFORMED.into()));
        };
        if version != 1 {
            return Err(refused(
                "VALIDATION",
                format!("persistedQuery version {version} is not supported; send version 1"),
            ));
        }
        let hash = hash.to_ascii_lowercase();
        if request.query.is_empty() {
            let query =
                self.get(&hash).ok_or_else(|| refused("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound".into()))?;
            request.query = query.to_string();
            return Ok(request);
        }
        let actual = hex(&Sha256::digest(request.query.as_bytes()));
        if actual != hash {
            return Err(refused(
                "VALIDATION",
                "provided sha does not match query: persistedQuery.sha256Hash must be the SHA-256 of the \
                 query text, in hex"
                    .into(),
            ));
        }
        self.put(hash, Arc::from(request.query.as_str()));
        Ok(request)
    }
}

const MALFORMED: &str = "the persistedQuery extension must be an object such as {\"version\": 1, \"sha256Hash\": \"<hex SHA-256 of the query>\"}";

fn refused(code: &str, message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    error
}

impl ExtensionFactory for PersistedQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for PersistedQueries {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, self.resolve(request)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let extension = serde_json::json!({ "version": 1, "sha256Hash": hash });
        let mut request = Request::new(query);
        request.extensions.insert("persistedQuery".into(), async_graphql::Value::from_json(extension).expect("json"));
        request
    }

    fn hash_of(query: &str) -> String {
        hex(&Sha256::digest(query.as_bytes()))
    }

    fn code(error: &ServerError) -> String {
        error.extensions.as_ref().and_then(|e| e.get("code")).map(|c| c.to_string()).unwrap_or_default()
    }

    #[test]
    fn unknown_hash_then_registered_then_served() {
        let cache = PersistedQueries::new(10);
        let query = "{ entities { id } }";
        let unknown = cache.resolve(with_hash("", &hash_of(query))).expect_err("not registered yet");
        assert_eq!(unknown.message, "PersistedQueryNotFound");
        assert_eq!(code(&unknown), "\"PERSISTED_QUERY_NOT_FOUND\"");
        cache.resolve(with_hash(query, &hash_of(query))).expect("registers");
        let served = cache.resolve(with_hash("", &hash_of(query))).expect("served by hash");
        assert_eq!(served.query, query);
    }

    #[test]
    fn a_wrong_hash_or_version_is_refused() {
        let cache = PersistedQueries::new(10);
        let wrong = cache.resolve(with_hash("{ entities { id } }", &hash_of("{ x }"))).expect_err("mismatch");
        assert!(wrong.message.starts_with("provided sha does not match query"), "{}", wrong.message);
        let mut request = Request::new("");
        request.extensions.insert(
            "persistedQuery".into(),
            async_graphql::Value::from_json(serde_json::json!({ "version": 2, "sha256Hash": "ab" })).expect("json"),
        );
        assert_eq!(code(&cache.resolve(request).expect_err("version 2")), "\"VALIDATION\"");
    }

    #[test]
    fn the_cache_keeps_its_entry_and_byte_bounds() {
        let cache = PersistedQueries::bounded(2, 40);
        let queries = ["{ a }", "{ b }", "{ c }"];
        for query in queries {
            cache.resolve(with_hash(query, &hash_of(query))).expect("registers");
        }
        assert!(cache.get(&hash_of("{ a }")).is_none(), "the least recently used went first");
        assert!(cache.get(&hash_of("{ c }")).is_some());
        let long = format!("{{ {} }}", "x".repeat(30));
        cache.resolve(with_hash(&long, &hash_of(&long))).expect("registers");
        let held = cache.lock();
        assert!(held.bytes <= 40, "{} bytes held", held.bytes);
        assert_eq!(held.bytes, held.queries.iter().map(|(_, q)| q.len()).sum::<usize>());
    }
}
