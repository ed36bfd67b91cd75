//! [`EndpointCache`]: the service endpoints the job runner posts to, kept ready between jobs.
//!
//! Owns the cached endpoints and the rule that keeps them current: an entry is used only while the
//! pipeline's [`Pipeline::endpoints_generation`] is the one it was read under, and an endpoint read while
//! a change was being made is not kept. It must not read or decide anything else: what an endpoint is
//! and whether it can be posted to is [`Delivery::endpoint`]'s.
//!
//! Why: reading an endpoint (its row and its secrets on a read connection) and building it for posting was
//! done for every job, though endpoints change about never while thousands of jobs an hour post to the
//! same few.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;
use weft_endpoints::Endpoint;
use weft_store::{Read, StoreExt};

use super::{Delivery, DeliveryError};
use crate::pipeline::Pipeline;

/// Endpoints by id, valid for one [`Pipeline::endpoints_generation`].
#[derive(Default)]
pub(super) struct EndpointCache(Mutex<Entries>);

#[derive(Default)]
struct Entries {
    generation: u64,
    endpoints: HashMap<Uuid, Arc<Endpoint>>,
}

impl EndpointCache {
    /// Endpoint `id` ready to post to: from the cache while no endpoint changed since it was read, else read
    /// from the store (committed data) and kept. Failures (unknown, misconfigured) are not kept: the next
    /// job reads again.
    pub(super) fn get(
        &self,
        pipeline: &Pipeline,
        delivery: &Delivery,
        id: Uuid,
    ) -> Result<Arc<Endpoint>, DeliveryError> {
        let generation = pipeline.endpoints_generation();
        {
            let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.generation != generation {
                entries.endpoints.clear();
                entries.generation = generation;
            }
            if let Some(e) = entries.endpoints.get(&id) {
                return Ok(Arc::clone(e));
            }
        }
        let endpoint = Arc::new(
            pipeline
                .store()
                .read(|r: &dyn Read| Ok::<_, DeliveryError>(delivery.endpoint(r, id)?))?,
        );
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A change counted since `generation` may have been committed before or after this read: keep the
        // endpoint only when none was (it is used for this job either way, as a read just before the change
        // would have been).
        if pipeline.endpoints_generation() == generation && entries.generation == generation {
            entries.endpoints.insert(id, Arc::clone(&endpoint));
        }
        Ok(endpoint)
    }
}
