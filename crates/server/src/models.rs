//! The server's model store, and the decoded models it keeps at hand for scoring.
//!
//! Scoring one customer should cost a store read only when the model changed: the registry
//! keeps each resolved reference (`clv-eu@production` → version 3, its state and parameters)
//! for `models.cache_seconds`, then resolves it again. A change made through this server
//! (a fit, a deleted version, an alias moved) drops the name's entries at once; a change made
//! through another replica on the same PostgreSQL store is seen within the same interval, the
//! short poll that bounds how long a replica may score with what an alias pointed at before.
//! Versions are never reused, so a re-resolved reference that names the same version reuses
//! the decoded model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mittari_engine::{ParamValue, StoredFit};
use mittari_store::{ModelStore, Reference, StoreError, StoredModel};

use crate::status::ServiceError;

/// A model resolved from a reference, ready to score with.
#[derive(Debug)]
pub(crate) struct ResolvedModel {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) metric: String,
    pub(crate) fit: Arc<StoredFit>,
}

#[derive(Debug)]
struct Cached {
    resolved_at: Instant,
    model: Arc<ResolvedModel>,
}

/// The store and the cache of resolved references.
pub(crate) struct Registry {
    store: Arc<dyn ModelStore>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.describe())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// References cached at most; beyond, the oldest half is dropped (a client naming endless
/// made-up references must not grow the server).
const MAX_CACHED: usize = 4096;

impl Registry {
    pub(crate) fn new(store: Box<dyn ModelStore>, ttl: Duration) -> Self {
        Registry {
            store: Arc::from(store),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Runs a store operation on a blocking thread: both backends do synchronous I/O.
    pub(crate) async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn ModelStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|e| ServiceError::Internal(format!("a model store task failed: {e}")))?
            .map_err(ServiceError::Store)
    }

    /// The model `reference` names, from the cache while fresh.
    pub(crate) async fn resolve(
        &self,
        reference: &str,
    ) -> Result<Arc<ResolvedModel>, ServiceError> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e: StoreError| ServiceError::Store(e))?;
        let previous = {
            let cache = self.cache.lock().map_err(poisoned)?;
            match cache.get(reference) {
                Some(hit) if hit.resolved_at.elapsed() < self.ttl => {
                    return Ok(Arc::clone(&hit.model));
                }
                Some(stale) => Some(Arc::clone(&stale.model)),
                None => None,
            }
        };
        let stored = self.with_store(move |store| store.get(&parsed)).await?;
        let model = match previous {
            // The same version: its decoded state is still right (versions are immutable).
            Some(previous)
                if previous.name == stored.name && previous.version == stored.version =>
            {
                previous
            }
            _ => Arc::new(resolved(stored)?),
        };
        let mut cache = self.cache.lock().map_err(poisoned)?;
        if cache.len() >= MAX_CACHED {
            let mut ages: Vec<Instant> = cache.values().map(|c| c.resolved_at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            cache.retain(|_, c| c.resolved_at > cutoff);
        }
        cache.insert(
            reference.to_owned(),
            Cached {
                resolved_at: Instant::now(),
                model: Arc::clone(&model),
            },
        );
        Ok(model)
    }

    /// Drops every cached reference to `name`: this server changed it.
    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, c| c.model.name != name);
        }
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ServiceError {
    ServiceError::Internal("the model cache's lock was poisoned".to_owned())
}

/// A stored model as the engine scores with it.
fn resolved(stored: StoredModel) -> Result<ResolvedModel, ServiceError> {
    let fit = stored_fit(&stored)?;
    Ok(ResolvedModel {
        name: stored.name,
        version: stored.version,
        metric: stored.model.metric,
        fit: Arc::new(fit),
    })
}

/// What the engine scores with, from a stored model: its state and the parameters it was
/// fitted with.
pub fn stored_fit(stored: &StoredModel) -> Result<StoredFit, ServiceError> {
    let reference = format!("{}@{}", stored.name, stored.version);
    let params: std::collections::BTreeMap<String, ParamValue> =
        serde_json::from_str(&stored.model.parameters).map_err(|e| {
            ServiceError::Internal(format!(
                "model {reference} has parameters this version cannot read: {e}"
            ))
        })?;
    Ok(StoredFit {
        reference,
        state: stored.model.state.clone(),
        params,
    })
}
