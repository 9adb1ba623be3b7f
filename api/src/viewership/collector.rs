//! Counting views from playback itself, off the request path.
//!
//! Every media request served (an HLS segment, an MP4 byte range) becomes a [`Hit`], handed to
//! this node's collector through a bounded queue: when the queue is full the hit is dropped and
//! counted (`studio_view_hits_dropped_total`), playback never waits. The collector groups hits
//! into viewer sessions (one viewer of one playback ID until [`SESSION_GAP`] without a request;
//! a viewer is the credential it plays with, else its address and user agent), credits each
//! session with the media time it was served (segment durations from the rendition's playlist,
//! learned when this node serves it, read from the store otherwise; MP4 bytes in proportion to the
//! file's duration), and every flush interval writes what changed: new sessions into
//! `view_sessions` (an id every node derives alike, so a viewer served by two nodes is one view)
//! and the sums into the hourly rollups (`view_rollups`, and `view_rollups_project` without the
//! playback ID), in one transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::Row;
use studio_media_core::store::ObjectStore;
use tokio::sync::{mpsc, watch};

use super::agent;
use super::repo::{self, RollupDelta, RollupKey};
use crate::access_control::cache::TtlCache;
use crate::clock::now_ms;
use crate::db::Database;

/// A viewer with no request for this long has left; a later request starts a new view.
pub const SESSION_GAP: Duration = Duration::from_secs(30 * 60);
/// Hits waiting for the collector; past this, hits are dropped.
const QUEUE: usize = 65_536;
/// Viewer sessions held in memory; past this, hits of new viewers are dropped.
const MAX_SESSIONS: usize = 500_000;
/// A playlist's segment durations are read again after this long (live playlists grow).
const PLAYLIST_TTL: Duration = Duration::from_secs(2);
/// Segment duration assumed when a playlist does not say.
const DEFAULT_SEGMENT_SECS: f64 = 2.0;

/// What was served.
#[derive(Debug, Clone)]
pub enum Media {
    /// An HLS segment at `path` below the playback ID (`720p0/3.ts`).
    Segment { path: String },
    /// `bytes` of an MP4 file of `size` bytes.
    Mp4 { bytes: u64, size: u64 },
}

/// One media request served.
#[derive(Debug, Clone)]
pub struct Hit {
    pub project_id: String,
    pub playback_id: String,
    pub creator_id: String,
    /// Who is watching: a digest of their credential, or of their address and user agent.
    pub viewer: [u8; 16],
    pub user_agent: String,
    pub country: String,
    pub media: Media,
    pub at: i64,
}

/// A viewer digest of `parts`.
pub fn viewer_digest(parts: &[&[u8]]) -> [u8; 16] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.finalize()[..16]);
    out
}

/// What the collector is handed.
pub enum Event {
    Hit(Hit),
    /// What a player's beacon added to the rollup of `key` at `at`; `player` is the player's
    /// session (its id and whether it reported an error).
    Beacon {
        key: RollupKey,
        at: i64,
        delta: RollupDelta,
        player: (String, bool),
    },
}

/// Segment durations (seconds) by file name, per rendition playlist (playback ID, directory),
/// with the target duration under `""`.
pub type SegmentDurations = TtlCache<(String, String), Arc<HashMap<String, f64>>>;

/// The handle request handlers record hits through.
pub struct Views {
    sender: mpsc::Sender<Event>,
    dropped: AtomicU64,
    /// Filled from the media playlists this node serves (no extra read), and by the collector
    /// from the store for segments whose playlist another node served.
    durations: Arc<SegmentDurations>,
}

impl Views {
    /// A handle and the receiving end for [`run`].
    pub fn new() -> (Views, mpsc::Receiver<Event>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        (
            Views {
                sender,
                dropped: AtomicU64::new(0),
                durations: Arc::new(TtlCache::new(10_000)),
            },
            receiver,
        )
    }

    /// Hands a hit to the collector, or drops it when the collector is behind.
    pub fn record(&self, hit: Hit) {
        self.send(Event::Hit(hit));
    }

    /// Hands what a player beacon added to the collector.
    pub fn record_beacon(
        &self,
        key: RollupKey,
        at: i64,
        delta: RollupDelta,
        player: (String, bool),
    ) {
        self.send(Event::Beacon {
            key,
            at,
            delta,
            player,
        });
    }

    fn send(&self, event: Event) {
        if self.sender.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("studio_view_hits_dropped_total").increment(1);
        }
    }

    /// Learns the segment durations of a media playlist being served (`dir` below the playback
    /// ID, `""` at its top), so that counting its segments reads nothing.
    pub fn learn_playlist(&self, playback_id: &str, dir: &str, playlist: &str) {
        if !playlist.contains("#EXTINF") {
            return;
        }
        self.durations.insert(
            (playback_id.to_string(), dir.to_string()),
            Arc::new(parse_durations(playlist)),
            Instant::now() + PLAYLIST_TTL,
        );
    }

    /// The durations the collector reads.
    pub fn durations(&self) -> Arc<SegmentDurations> {
        self.durations.clone()
    }

    /// Hits dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

struct Session {
    id: String,
    started_at: i64,
    last_seen: i64,
    key: RollupKey,
    /// Whether its row was written (by this node or, found there, by another).
    stored: bool,
    pending_playtime_ms: i64,
    dirty: bool,
}

type SessionKey = (String, String, [u8; 16]);

struct Collector {
    db: Database,
    store: Arc<dyn ObjectStore>,
    sessions: HashMap<SessionKey, Session>,
    /// Beacon sums since the last flush, by rollup row.
    beacons: HashMap<(RollupKey, i64), RollupDelta>,
    /// Beaconing players heard from since the last flush, by id.
    players: HashMap<String, repo::PlayerWrite>,
    playlists: Arc<SegmentDurations>,
    /// Durations (seconds) of assets' files, by playback ID.
    durations: TtlCache<String, f64>,
    retention: Duration,
    last_prune: Instant,
}

/// Runs the collector until `shutdown`, flushing every `interval` and once more at the end.
pub async fn run(
    mut hits: mpsc::Receiver<Event>,
    durations: Arc<SegmentDurations>,
    db: Database,
    store: Arc<dyn ObjectStore>,
    interval: Duration,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut collector = Collector {
        db,
        store,
        sessions: HashMap::new(),
        beacons: HashMap::new(),
        players: HashMap::new(),
        playlists: durations,
        durations: TtlCache::new(10_000),
        retention,
        last_prune: Instant::now(),
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = hits.recv() => match event {
                Some(event) => collector.take(event).await,
                None => break,
            },
            _ = tick.tick() => collector.flush().await,
            _ = shutdown.changed() => break,
        }
    }
    while let Ok(event) = hits.try_recv() {
        collector.take(event).await;
    }
    collector.flush().await;
}

impl Collector {
    async fn take(&mut self, event: Event) {
        match event {
            Event::Hit(hit) => self.add(hit).await,
            Event::Beacon {
                key,
                at,
                delta,
                player: (id, errored),
            } => {
                let hour = at - at.rem_euclid(3_600_000);
                self.beacons
                    .entry((key.clone(), hour))
                    .or_default()
                    .add(&delta);
                let player = self.players.entry(id.clone()).or_insert(repo::PlayerWrite {
                    id,
                    key,
                    last_seen_at: at,
                    errored,
                });
                player.last_seen_at = player.last_seen_at.max(at);
                player.errored |= errored;
            }
        }
    }

    async fn add(&mut self, hit: Hit) {
        let media_ms = self.media_ms(&hit).await;
        let key = (hit.project_id.clone(), hit.playback_id.clone(), hit.viewer);
        let gap = SESSION_GAP.as_millis() as i64;
        let fresh = match self.sessions.get(&key) {
            Some(session) => hit.at - session.last_seen > gap,
            None => true,
        };
        if fresh {
            if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&key) {
                metrics::counter!("studio_view_hits_dropped_total").increment(1);
                return;
            }
            let agent = agent::parse(&hit.user_agent);
            let id = hex::encode(viewer_digest(&[
                hit.project_id.as_bytes(),
                hit.playback_id.as_bytes(),
                &hit.viewer,
                &(hit.at / gap).to_le_bytes(),
            ]));
            self.sessions.insert(
                key.clone(),
                Session {
                    id,
                    started_at: hit.at,
                    last_seen: hit.at,
                    key: RollupKey {
                        project_id: hit.project_id,
                        playback_id: hit.playback_id,
                        creator_id: hit.creator_id,
                        device_type: agent.device_type,
                        browser: agent.browser,
                        os: agent.os,
                        country: hit.country,
                    },
                    stored: false,
                    pending_playtime_ms: 0,
                    dirty: true,
                },
            );
        }
        let session = self.sessions.get_mut(&key).expect("inserted above");
        session.last_seen = session.last_seen.max(hit.at);
        session.pending_playtime_ms += media_ms;
        session.dirty = true;
    }

    /// Milliseconds of media `hit` served.
    async fn media_ms(&self, hit: &Hit) -> i64 {
        match &hit.media {
            Media::Segment { path } => {
                let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
                let durations = self.segment_durations(&hit.playback_id, dir).await;
                let secs = durations
                    .get(file)
                    .or_else(|| durations.get(""))
                    .copied()
                    .unwrap_or(DEFAULT_SEGMENT_SECS);
                (secs * 1000.0) as i64
            }
            Media::Mp4 { bytes, size } if *size > 0 => {
                let duration = self.asset_duration(&hit.playback_id).await;
                (duration * 1000.0 * (*bytes as f64 / *size as f64)) as i64
            }
            Media::Mp4 { .. } => 0,
        }
    }

    /// Segment durations of the playlist in `dir`, with the target duration under `""`.
    async fn segment_durations(&self, playback_id: &str, dir: &str) -> Arc<HashMap<String, f64>> {
        let key = (playback_id.to_string(), dir.to_string());
        if let Some(known) = self.playlists.get(&key) {
            return known;
        }
        let object = if dir.is_empty() {
            crate::playback::hls::key(playback_id, "index.m3u8")
        } else {
            crate::playback::hls::key(playback_id, &format!("{dir}/index.m3u8"))
        };
        let parsed = match self.store.get(&object).await {
            Ok(Some(bytes)) => parse_durations(&String::from_utf8_lossy(&bytes)),
            _ => HashMap::new(),
        };
        let parsed = Arc::new(parsed);
        self.playlists
            .insert(key, parsed.clone(), Instant::now() + PLAYLIST_TTL);
        parsed
    }

    async fn asset_duration(&self, playback_id: &str) -> f64 {
        if let Some(known) = self.durations.get(&playback_id.to_string()) {
            return known;
        }
        let duration = sqlx::query("SELECT video_spec FROM assets WHERE playback_id = $1")
            .bind(playback_id)
            .fetch_optional(self.db.reader())
            .await
            .ok()
            .flatten()
            .and_then(|row| {
                row.try_get::<Option<String>, _>("video_spec")
                    .ok()
                    .flatten()
            })
            .and_then(|spec| serde_json::from_str::<crate::assets::VideoSpec>(&spec).ok())
            .map(|spec| spec.duration)
            .unwrap_or(0.0);
        self.durations.insert(
            playback_id.to_string(),
            duration,
            Instant::now() + Duration::from_secs(600),
        );
        duration
    }

    async fn flush(&mut self) {
        let now = now_ms();
        let hour = |t: i64| t - t.rem_euclid(3_600_000);
        let mut deltas: HashMap<(RollupKey, i64), RollupDelta> = std::mem::take(&mut self.beacons);
        let mut sessions = Vec::new();
        for session in self.sessions.values().filter(|s| s.dirty) {
            sessions.push(repo::SessionWrite {
                id: session.id.clone(),
                key: session.key.clone(),
                started_at: session.started_at,
                last_seen_at: session.last_seen,
                playtime_ms: session.pending_playtime_ms,
                new: !session.stored,
            });
        }
        if !sessions.is_empty() {
            match repo::write_sessions(&self.db, &sessions).await {
                Ok(created) => {
                    for (write, created) in sessions.iter().zip(created) {
                        let entry = deltas
                            .entry((write.key.clone(), hour(write.started_at)))
                            .or_default();
                        if created {
                            entry.views += 1;
                        }
                        deltas
                            .entry((write.key.clone(), hour(now)))
                            .or_default()
                            .playtime_ms += write.playtime_ms;
                    }
                    for session in self.sessions.values_mut().filter(|s| s.dirty) {
                        session.stored = true;
                        session.dirty = false;
                        session.pending_playtime_ms = 0;
                    }
                }
                Err(err) => {
                    // Kept in memory for the next flush.
                    tracing::warn!(error = %err, "writing viewer sessions failed");
                    return;
                }
            }
        }
        deltas.retain(|_, d| *d != RollupDelta::default());
        let players: Vec<_> = std::mem::take(&mut self.players).into_values().collect();
        if !players.is_empty()
            && let Err(err) = repo::write_players(&self.db, &players).await
        {
            tracing::warn!(error = %err, "writing beaconing players failed");
        }
        if !deltas.is_empty()
            && let Err(err) = repo::add_to_rollups(&self.db, &deltas).await
        {
            tracing::warn!(error = %err, "writing view rollups failed; those counts are lost");
        }
        let gap = SESSION_GAP.as_millis() as i64;
        self.sessions.retain(|_, s| now - s.last_seen <= gap);
        if self.last_prune.elapsed() > Duration::from_secs(3600) {
            self.last_prune = Instant::now();
            let before = now - self.retention.as_millis() as i64;
            if let Err(err) = repo::delete_sessions_before(&self.db, before).await {
                tracing::warn!(error = %err, "removing old viewer sessions failed");
            }
        }
    }
}

/// `#EXTINF` durations of a media playlist by URI (query removed), and `#EXT-X-TARGETDURATION`
/// under `""`.
fn parse_durations(playlist: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut pending = None;
    for line in playlist.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            pending = rest
                .split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            if let Ok(target) = rest.trim().parse::<f64>() {
                out.insert(String::new(), target);
            }
        } else if !line.is_empty()
            && !line.starts_with('#')
            && let Some(duration) = pending.take()
        {
            let uri = line.split('?').next().unwrap_or(line);
            out.insert(uri.to_string(), duration);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_durations() {
        let durations = parse_durations(
            "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:5.972,\n0.ts\n#EXTINF:2.5,\n1.ts?grant=x\n",
        );
        assert_eq!(durations.get("0.ts"), Some(&5.972));
        assert_eq!(durations.get("1.ts"), Some(&2.5));
        assert_eq!(durations.get(""), Some(&6.0));
    }
}
