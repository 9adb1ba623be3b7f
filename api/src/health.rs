//! What `/api/healthz` checks besides the database: that the media store takes a write. A node
//! whose segments cannot be stored serves nothing a viewer can play, so a load balancer must
//! stop sending it encoders and viewers.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use studio_media_core::store::ObjectStore;

/// The object every probe rewrites: one small object, whatever the number of probes and nodes.
const PROBE_KEY: &str = "health/probe";
/// How long a probe's answer is reused, so frequent health checks cost one write per period.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A store that does not answer within this is as good as unwritable.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The last answer of the media store probe.
#[derive(Default)]
pub struct StoreProbe {
    /// When the store was last probed, and whether it took the write. Held across the probe so
    /// that concurrent health checks wait for one probe instead of each writing.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl StoreProbe {
    /// True when `store` took a small write within the last [`PROBE_EVERY`]; probes it again
    /// when that answer is older. A change of answer is logged, with its cause.
    pub async fn store_writable(&self, store: &dyn ObjectStore) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, writable)) = *last
            && at.elapsed() < PROBE_EVERY
        {
            return writable;
        }
        let written = tokio::time::timeout(
            PROBE_DEADLINE,
            store.put(PROBE_KEY, Bytes::from_static(b"ok\n")),
        )
        .await;
        let writable = matches!(written, Ok(Ok(())));
        let was_writable = last.map(|(_, writable)| writable);
        match written {
            Ok(Err(err)) if was_writable != Some(false) => {
                tracing::error!(error = %err, "the media store cannot be written: reporting unhealthy")
            }
            Err(_) if was_writable != Some(false) => tracing::error!(
                "the media store did not answer within {} s: reporting unhealthy",
                PROBE_DEADLINE.as_secs()
            ),
            Ok(Ok(())) if was_writable == Some(false) => {
                tracing::info!("the media store can be written again")
            }
            _ => {}
        }
        *last = Some((Instant::now(), writable));
        writable
    }
}
