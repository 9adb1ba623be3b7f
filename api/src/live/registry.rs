//! The publishers connected to this node, by stream, so the API can end them (terminate,
//! suspend, delete) and refuse a second publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use studio_media_core::ingest::SessionHandle;
use studio_media_core::live_feed::LiveFeed;

/// One connected publisher.
#[derive(Clone)]
pub struct Publisher {
    pub handle: SessionHandle,
    /// Set when the API ends the session: segments still in flight must not bring the stream back
    /// to life.
    pub ending: Arc<AtomicBool>,
    /// When the publish began (ms): a terminate stamped later ends it.
    pub started_at: i64,
    /// The publish's packets as they arrive, for WebRTC viewers.
    pub feed: Arc<LiveFeed>,
    /// What WebRTC viewers follow (made from `feed` while they watch).
    pub webrtc_feed: Arc<Mutex<Option<Arc<LiveFeed>>>>,
}

#[derive(Default)]
pub struct Registry {
    by_stream: Mutex<HashMap<String, Publisher>>,
    /// Per stream, held by the session whose transcode pipeline writes the renditions.
    renditions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Registry {
    /// Registers the publisher of `stream_id`; false when the stream already has one.
    pub fn claim(&self, stream_id: &str, publisher: Publisher) -> bool {
        let mut map = self
            .by_stream
            .lock()
            .expect("the registry lock is never poisoned");
        if map.contains_key(stream_id) {
            return false;
        }
        map.insert(stream_id.to_string(), publisher);
        true
    }

    pub fn is_live(&self, stream_id: &str) -> bool {
        self.by_stream
            .lock()
            .expect("the registry lock is never poisoned")
            .contains_key(stream_id)
    }

    /// Forgets the publisher of `stream_id` if it is still `handle`'s session.
    pub fn release(&self, stream_id: &str, handle: &SessionHandle) {
        let mut map = self
            .by_stream
            .lock()
            .expect("the registry lock is never poisoned");
        if map
            .get(stream_id)
            .is_some_and(|p| p.handle.id() == handle.id())
        {
            map.remove(stream_id);
        }
    }

    /// The lock a session's transcode pipeline holds while it writes the stream's renditions,
    /// so that a reconnecting publisher's pipeline starts only after the previous one closed
    /// its playlists. Locks nobody else holds are dropped on the way.
    pub fn renditions_lock(&self, stream_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .renditions
            .lock()
            .expect("the registry lock is never poisoned");
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(stream_id.to_string()).or_default().clone()
    }

    /// What WebRTC viewers of `stream_id` follow (`webrtc::feed`): made from its live packets
    /// when the first viewer comes, shared by every viewer after it.
    pub fn webrtc_feed(&self, stream_id: &str) -> Option<Arc<LiveFeed>> {
        let (feed, made) = {
            let map = self
                .by_stream
                .lock()
                .expect("the registry lock is never poisoned");
            let publisher = map.get(stream_id)?;
            (publisher.feed.clone(), publisher.webrtc_feed.clone())
        };
        let mut made = made.lock().expect("the registry lock is never poisoned");
        match made.as_ref() {
            Some(running) if !running.is_closed() => Some(running.clone()),
            _ => {
                let started = studio_media_core::webrtc::feed::for_webrtc(&feed)?;
                *made = Some(started.clone());
                Some(started)
            }
        }
    }

    /// The streams with a publisher on this node, and when each publish began.
    pub fn publishers(&self) -> Vec<(String, i64)> {
        self.by_stream
            .lock()
            .expect("the registry lock is never poisoned")
            .iter()
            .map(|(stream, publisher)| (stream.clone(), publisher.started_at))
            .collect()
    }

    /// Ends the publish of `stream_id`, if it has one on this node.
    pub fn disconnect(&self, stream_id: &str) {
        if let Some(publisher) = self
            .by_stream
            .lock()
            .expect("the registry lock is never poisoned")
            .get(stream_id)
        {
            publisher.ending.store(true, Ordering::Release);
            publisher.handle.disconnect();
        }
    }
}
