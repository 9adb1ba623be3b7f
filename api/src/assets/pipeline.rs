//! The `upload` task: makes an asset playable from its source, an uploaded file or a URL.
//!
//! source (from the store, or downloaded) -> probe and check (container, codecs, length, size)
//! -> segments cut at the source's keyframes (media-core `vod`) -> for each segment: the source
//! copied as is and the ladder transcoded by the configured transcoder (bundled or the Livepeer
//! network, as for live), each written to the store as it is made -> VOD media playlists and the
//! master playlist -> a thumbnail per segment (its first picture as a JPEG) and their WebVTT
//! index -> static MP4s of each rendition when asked (`static{height}p0.mp4`) ->
//! `ready` with its size, digests and `videoSpec`, in one transaction with `asset.ready`.
//!
//! Progress moves forward on the task and the asset as segments are done. Memory holds a couple
//! of segments whatever the file's length: segments are handed over one by one. A failure
//! fails the task and the asset with the reason (`asset.failed`); a store or network hiccup is
//! retried by the job system.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use studio_media_core::ffmpeg_job::{self, DeadlinePolicy, JobKind};
use studio_media_core::hls::playlist::{MediaPlaylist, Variant, master_playlist};
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::hls::variant_of;
use studio_media_core::mp4::{self, MediaInfo, TrackKind};
use studio_media_core::segment::Segment;
use studio_media_core::store::ObjectStore;
use studio_media_core::transcode::{
    Rendition, RenditionProfile, TranscodeError, TranscodeJob, Transcoder, plan_renditions,
};
use studio_media_core::vod::thumbnail::{self, Cue, vtt};
use studio_media_core::vod::{self, SourceLimits};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::import::{ImportError, Importer};
use super::upload::{Digests, Received};
use super::{Asset, AssetFile, AssetPhase, FileKind, VideoSpec, repo};
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Database;
use crate::events::EventType;
use crate::playback::hls::key;
use crate::tasks::runner::{Job, JobError, TaskHandler};
use crate::tasks::{Task, TaskType};

/// How often the asset's progress is written (the task's goes with its heartbeat).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Segments being transcoded at once: two keep the cores busy while one segment's encoders
/// drain and the next one decodes.
const TRANSCODES_IN_FLIGHT: usize = 2;
/// A segment's renditions being made.
type Transcoding = tokio_util::task::AbortOnDropHandle<
    Result<studio_media_core::transcode::TranscodeOutput, TranscodeError>,
>;
/// Width of the thumbnails (one per segment).
const THUMBNAIL_WIDTH: u32 = 320;
/// The thumbnails' WebVTT index, beside the pictures.
const THUMBNAILS_VTT: &str = "thumbnails/thumbnails.vtt";

/// Makes assets from their sources: the handler of `upload` tasks, with only what it needs.
pub struct AssetTasks {
    db: Database,
    store: Arc<dyn ObjectStore>,
    transcoder: Arc<dyn Transcoder>,
    importer: Importer,
    public_url: String,
    webhooks: Arc<Notify>,
    limits: SourceLimits,
    segment: Duration,
}

impl AssetTasks {
    pub fn new(
        config: &Config,
        db: Database,
        store: Arc<dyn ObjectStore>,
        transcoder: Arc<dyn Transcoder>,
        public_url: String,
        webhooks: Arc<Notify>,
    ) -> anyhow::Result<AssetTasks> {
        Ok(AssetTasks {
            db,
            store,
            transcoder,
            importer: Importer::new(config)?,
            public_url,
            webhooks,
            limits: SourceLimits {
                max_duration: Duration::from_secs(config.vod.max_source_duration_secs),
                max_width: config.vod.max_source_width,
                max_height: config.vod.max_source_height,
            },
            segment: Duration::from_secs(config.vod.segment_secs),
        })
    }

    /// Makes the job's asset: `source` puts its source file in the path it is given (an upload,
    /// a download, a clip's cut) and says its size and digests; the rest is the same for every
    /// source.
    pub(crate) async fn process(
        &self,
        job: &Job,
        source: &dyn SourceFile,
    ) -> Result<serde_json::Value, JobError> {
        let project_id = job.task.project_id.as_str();
        let asset_id = job
            .task
            .output_asset_id
            .as_deref()
            .ok_or_else(|| JobError::Fatal("the task names no asset".into()))?;
        let asset = repo::get(self.db.reader(), project_id, asset_id)
            .await
            .map_err(|e| JobError::Retriable(format!("reading the asset: {e}")))?
            .ok_or_else(|| JobError::Fatal("the asset was deleted".into()))?;
        let done = serde_json::json!({ "assetId": asset.id });
        match asset.status.phase {
            AssetPhase::Ready => return Ok(done),
            AssetPhase::Waiting | AssetPhase::Processing => {}
            other => {
                return Err(JobError::Fatal(format!("the asset is {}", other.as_str())));
            }
        }
        let source_path = job.scratch.join("source");
        let received = source.fetch(job, &asset, &source_path).await?;
        repo::set_hash(&self.db, &asset.project_id, &asset.id, &received.hashes())
            .await
            .map_err(JobError::database)?;
        let size = received.size;
        self.progress(&asset, 0.0).await;
        job.set_progress(0.05);

        let info = self.probe(&source_path).await?;
        let renditions = self.ladder(asset.profiles.as_deref(), &info);
        let target = self.segment_target(job);

        let folder = format!("hls/{}", asset.playback_id);
        let dest = Destination {
            store: self.store.as_ref(),
            hls: folder.clone(),
            mp4: asset.static_mp4.then(|| folder.clone()),
            asset: Some(&asset),
            name: &asset.id,
        };
        let packaged = self
            .package(job, &dest, &source_path, &info, renditions, target)
            .await?;
        let file = |kind, path: &str| AssetFile {
            kind,
            path: key(&asset.playback_id, path),
            size: None,
            width: None,
            height: None,
            bitrate: None,
        };
        let mut files = vec![file(FileKind::CatalystHlsManifest, "index.m3u8")];
        if packaged.thumbnails {
            files.push(file(FileKind::ThumbnailsVtt, THUMBNAILS_VTT));
        }
        if asset.static_mp4 {
            files.extend(
                self.static_mp4s(job, &dest, packaged.mp4_sources, &info)
                    .await?,
            );
        }
        self.finish_ready(job, &asset, size, &info, files, done.clone())
            .await
            .map_err(|e| JobError::Retriable(format!("{e:#}")))?;
        Ok(done)
    }

    /// Puts the source of an upload or import in `path`: the uploaded object, or the URL
    /// downloaded.
    async fn fetch_source(&self, job: &Job, path: &std::path::Path) -> Result<Received, JobError> {
        let params = job.params();
        // An upload: its object (direct PUT) or its pieces (TUS), copied into the scratch file
        // while the file's digests are computed.
        let objects = if let Some(object) = params.get("sourceKey").and_then(|v| v.as_str()) {
            Some(vec![object.to_string()])
        } else if let Some(upload) = params.get("tusUpload").and_then(|v| v.as_str()) {
            Some(
                super::tus::parts(&self.db, upload)
                    .await
                    .map_err(JobError::database)?,
            )
        } else {
            None
        };
        if let Some(objects) = objects {
            return download(self.store.as_ref(), &objects, path, |_| {
                "the uploaded file is gone".into()
            })
            .await;
        }
        if let Some(url) = params.get("url").and_then(|v| v.as_str()) {
            return self.fetch_url(url, path).await;
        }
        Err(JobError::Fatal("the task names no source".into()))
    }

    /// Probes the source and checks it against the limits; a file that is not media, or not
    /// media this server makes assets of, fails for good.
    pub(crate) async fn probe(&self, source: &std::path::Path) -> Result<MediaInfo, JobError> {
        let path = source.to_path_buf();
        let info = ffmpeg_job::run(
            JobKind::Probe,
            DeadlinePolicy::PROBE.for_media(Duration::ZERO),
            move |control| mp4::probe(&path, control),
        )
        .await
        .map_err(|e| JobError::Fatal(format!("the file could not be read as media: {e}")))?;
        vod::check_source(&info, &self.limits).map_err(|e| JobError::Fatal(e.to_string()))?;
        Ok(info)
    }

    /// The segment length the job asks for (`targetSegmentSizeSecs`), or the configured one.
    pub(crate) fn segment_target(&self, job: &Job) -> Duration {
        job.params()
            .get("targetSegmentSizeSecs")
            .and_then(|v| v.as_f64())
            .map_or(self.segment, Duration::from_secs_f64)
    }

    /// Downloads an import URL into `path` through the destination guard.
    pub(crate) async fn fetch_url(
        &self,
        url: &str,
        path: &std::path::Path,
    ) -> Result<super::upload::Received, JobError> {
        self.importer.fetch(url, path).await.map_err(|e| match e {
            ImportError::Fatal(m) => JobError::Fatal(m),
            ImportError::Retriable(m) => JobError::Retriable(m),
        })
    }

    /// The renditions of `profiles` (or the default ladder) that fit the source.
    pub(crate) fn ladder(
        &self,
        profiles: Option<&[crate::profiles::TranscodeProfile]>,
        info: &MediaInfo,
    ) -> Vec<Rendition> {
        let Some(video) = info.tracks.iter().find(|t| t.kind == TrackKind::Video) else {
            return Vec::new();
        };
        let (width, height) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
        let profiles: Vec<RenditionProfile> = match profiles {
            Some(profiles) => profiles
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_rendition(i, width, height))
                .collect(),
            None => crate::profiles::default_asset_profiles(),
        };
        plan_renditions(width, height, video.fps.unwrap_or(30.0), &profiles)
    }

    /// Writes the source and every rendition as VOD HLS into `dest`, segment by segment, then
    /// the playlists and the thumbnails' index. Returns, for static MP4s, the MPEG-TS file each
    /// rendition (or the source when there is none) was also written to.
    pub(crate) async fn package(
        &self,
        job: &Job,
        dest: &Destination<'_>,
        source: &std::path::Path,
        info: &MediaInfo,
        renditions: Vec<Rendition>,
        target: Duration,
    ) -> Result<Packaged, JobError> {
        let base = dest.hls.as_str();
        let duration_s = info.duration_s.max(0.001);
        let renditions: Arc<[Rendition]> = renditions.into();
        let mut variants: Vec<VariantOutput> = std::iter::once("source".to_string())
            .chain(renditions.iter().map(|r| dir_name(&r.profile.name)))
            .map(VariantOutput::new)
            .collect();
        // Static MP4s are made of the renditions; of the source when none fits.
        let mp4_of: Vec<usize> = if renditions.is_empty() {
            vec![0]
        } else {
            (1..=renditions.len()).collect()
        };
        if dest.mp4.is_some() {
            for &i in &mp4_of {
                let path = job.scratch.join(format!("{}.ts", variants[i].dir));
                variants[i].ts_file = Some((
                    path.clone(),
                    tokio::io::BufWriter::new(
                        tokio::fs::File::create(&path)
                            .await
                            .map_err(JobError::scratch)?,
                    ),
                ));
            }
        }

        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Segment>(2);
        let (input, copy) = (source.to_path_buf(), job.scratch.join("source-copy.ts"));
        let demux = ffmpeg_job::run(
            JobKind::Demux,
            DeadlinePolicy::VOD_SOURCE.for_media(Duration::from_secs_f64(duration_s)),
            move |control| {
                vod::segment_file(&input, &copy, target, control, |segment| {
                    sender.blocking_send(segment).is_ok()
                })
            },
        );
        let mut cues: Vec<Cue> = Vec::new();
        let mut first_start: Option<i64> = None;
        let consume = async {
            let mut last_progress = Instant::now();
            // Segments are transcoded TRANSCODES_IN_FLIGHT at a time (one decodes while the
            // other's encoders finish), and written in order.
            let stream: Arc<str> = Arc::from(dest.name);
            let mut in_flight: std::collections::VecDeque<(Arc<Segment>, Option<Transcoding>)> =
                std::collections::VecDeque::new();
            let mut more = true;
            loop {
                while more && in_flight.len() < TRANSCODES_IN_FLIGHT {
                    let Some(segment) = receiver.recv().await else {
                        more = false;
                        break;
                    };
                    let segment = Arc::new(segment);
                    let transcoding = (!renditions.is_empty() && segment.video_config.is_some())
                        .then(|| {
                            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                                self.transcoder.transcode(TranscodeJob {
                                    stream: stream.clone(),
                                    segment: segment.clone(),
                                    renditions: renditions.clone(),
                                }),
                            ))
                        });
                    in_flight.push_back((segment, transcoding));
                }
                let Some((segment, transcoding)) = in_flight.pop_front() else {
                    break;
                };
                let outputs =
                    match transcoding {
                        Some(handle) => Some(handle.await.map_err(|e| {
                            JobError::Retriable(format!("transcoding stopped: {e}"))
                        })?),
                        None => None,
                    };
                let n = segment.sequence;
                variants[0].write(dest.store, base, n, &segment).await?;
                let origin = *first_start.get_or_insert(segment.start_ms);
                self.thumbnail(dest, &segment, origin, &mut cues).await?;
                if let Some(outputs) = outputs {
                    let outputs = outputs.map_err(transcode_error)?;
                    for (i, output) in outputs.iter().enumerate() {
                        variants[i + 1].write(dest.store, base, n, output).await?;
                    }
                }
                let done = ((segment.start_ms + segment.duration_ms) as f64 / 1000.0 / duration_s)
                    .clamp(0.0, 1.0);
                job.set_progress(0.05 + 0.85 * done);
                if last_progress.elapsed() >= PROGRESS_EVERY
                    && let Some(asset) = dest.asset
                {
                    last_progress = Instant::now();
                    self.progress(asset, 0.9 * done).await;
                }
            }
            Ok::<(), JobError>(())
        };
        let (demuxed, consumed) = tokio::join!(demux, consume);
        consumed?;
        demuxed.map_err(|e| match e {
            vod::VodError::Job(stopped) => JobError::Retriable(stopped.to_string()),
            other => JobError::Fatal(other.to_string()),
        })?;
        self.transcoder.stream_ended(dest.name);

        let mut master = Vec::new();
        for variant in &mut variants {
            if variant.playlist.is_empty() {
                continue;
            }
            let playlist = Bytes::from(variant.playlist.render());
            dest.store
                .put(&format!("{base}/{}/index.m3u8", variant.dir), playlist)
                .await
                .map_err(JobError::media_store)?;
            if let Some(entry) = variant.master_entry() {
                master.push(entry);
            }
        }
        dest.store
            .put(
                &format!("{base}/index.m3u8"),
                Bytes::from(master_playlist(&master)),
            )
            .await
            .map_err(JobError::media_store)?;
        let thumbnails = !cues.is_empty();
        if thumbnails {
            dest.store
                .put(&format!("{base}/{THUMBNAILS_VTT}"), Bytes::from(vtt(&cues)))
                .await
                .map_err(JobError::media_store)?;
        }
        let mut outputs = Vec::new();
        for i in mp4_of {
            let variant = &mut variants[i];
            if let Some((path, mut file)) = variant.ts_file.take() {
                file.flush().await.map_err(JobError::scratch)?;
                outputs.push(TsOutput {
                    path,
                    bitrate: variant.average_bps(),
                });
            }
        }
        Ok(Packaged {
            mp4_sources: outputs,
            thumbnails,
        })
    }

    /// Stores the JPEG of the segment's first picture and its cue (times from `origin`, the
    /// first segment's start).
    async fn thumbnail(
        &self,
        dest: &Destination<'_>,
        segment: &Arc<Segment>,
        origin: i64,
        cues: &mut Vec<Cue>,
    ) -> Result<(), JobError> {
        let source = segment.clone();
        let jpeg = ffmpeg_job::run(
            JobKind::Thumbnail,
            DeadlinePolicy::PROBE.for_media(Duration::ZERO),
            move |control| thumbnail::keyframe_jpeg(&source, THUMBNAIL_WIDTH, control),
        )
        .await
        .map_err(|e| JobError::Fatal(format!("making a thumbnail failed: {e}")))?;
        let Some(jpeg) = jpeg else {
            return Ok(());
        };
        let file = format!("keyframes_{}.jpg", segment.sequence);
        dest.store
            .put(&format!("{}/thumbnails/{file}", dest.hls), jpeg)
            .await
            .map_err(JobError::media_store)?;
        let start_ms = (segment.start_ms - origin).max(0);
        let start_ms = cues.last().map_or(start_ms, |c| c.end_ms.max(start_ms));
        cues.push(Cue {
            start_ms,
            end_ms: start_ms + segment.duration_ms.max(0),
            file,
        });
        Ok(())
    }

    /// Remuxes each rendition's MPEG-TS into `static{height}p0.mp4` (one per height) in the
    /// destination's MP4 folder, highest bitrate first.
    pub(crate) async fn static_mp4s(
        &self,
        job: &Job,
        dest: &Destination<'_>,
        mut outputs: Vec<TsOutput>,
        info: &MediaInfo,
    ) -> Result<Vec<AssetFile>, JobError> {
        let Some(folder) = dest.mp4.as_deref() else {
            return Ok(Vec::new());
        };
        outputs.sort_by_key(|o| std::cmp::Reverse(o.bitrate));
        let media = Duration::from_secs_f64(info.duration_s.max(0.0));
        let mut files: Vec<AssetFile> = Vec::new();
        for output in outputs {
            let mp4_path = output.path.with_extension("mp4");
            let probed = mp4::remux_and_probe(output.path.clone(), mp4_path.clone(), media)
                .await
                .map_err(|e| JobError::Fatal(format!("making the MP4 failed: {e}")))?;
            let _ = tokio::fs::remove_file(&output.path).await;
            let video = probed.tracks.iter().find(|t| t.kind == TrackKind::Video);
            let name = match video.and_then(|v| v.height) {
                Some(height) => format!("static{height}p0.mp4"),
                None => "audio.mp4".to_string(),
            };
            let object = format!("{folder}/{name}");
            if files.iter().any(|f| f.path == object) {
                continue;
            }
            let size = tokio::fs::metadata(&mp4_path)
                .await
                .map_err(JobError::scratch)?
                .len();
            dest.store
                .put_file_moved(&object, &mp4_path)
                .await
                .map_err(JobError::media_store)?;
            let _ = tokio::fs::remove_file(&mp4_path).await;
            files.push(AssetFile {
                kind: FileKind::StaticTranscodedMp4,
                path: object,
                size: Some(size as i64),
                width: video.and_then(|v| v.width).map(i64::from),
                height: video.and_then(|v| v.height).map(i64::from),
                bitrate: probed.bitrate,
            });
            job.set_progress(0.95);
        }
        Ok(files)
    }

    /// Writes the asset's progress (moving it to `processing`); a failure only delays it.
    async fn progress(&self, asset: &Asset, progress: f64) {
        if let Err(err) =
            repo::set_progress(&self.db, &asset.project_id, &asset.id, progress, now_ms()).await
        {
            tracing::warn!(asset = %asset.id, error = %err, "recording an asset's progress failed");
        }
    }

    /// The asset turns `ready` with `asset.ready`, and its task `completed` with `output`, in
    /// one transaction: whoever sees the one sees the other.
    async fn finish_ready(
        &self,
        job: &Job,
        asset: &Asset,
        size: u64,
        info: &MediaInfo,
        files: Vec<AssetFile>,
        output: serde_json::Value,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        if !job.complete_in(&mut tx, output).await? {
            anyhow::bail!("the task is no longer this node's");
        }
        repo::set_ready(
            &mut tx,
            &asset.project_id,
            &asset.id,
            size as i64,
            &VideoSpec::of(info, &info.container),
            &files,
            now,
        )
        .await?;
        if let Some(ready) = repo::get(&mut *tx, &asset.project_id, &asset.id).await? {
            super::emit(
                &mut tx,
                &ready,
                EventType::AssetReady,
                &self.public_url,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.webhooks.notify_one();
        tracing::info!(asset = %asset.id, playback_id = %asset.playback_id, "asset ready");
        Ok(())
    }

    /// The asset of a task that failed for good turns `failed` with the reason and
    /// `asset.failed`, unless it is already finished.
    async fn fail_asset(&self, task: &Task, error: &str) -> anyhow::Result<()> {
        let Some(id) = task.output_asset_id.as_deref() else {
            return Ok(());
        };
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let Some(asset) = repo::get(&mut *tx, &task.project_id, id).await? else {
            return Ok(());
        };
        if !matches!(
            asset.status.phase,
            AssetPhase::Uploading | AssetPhase::Waiting | AssetPhase::Processing
        ) {
            return Ok(());
        }
        let message: String = error.chars().take(512).collect();
        repo::set_phase(
            &mut tx,
            &task.project_id,
            id,
            AssetPhase::Failed,
            None,
            Some(&message),
            now,
        )
        .await?;
        if let Some(failed) = repo::get(&mut *tx, &task.project_id, id).await? {
            super::emit(
                &mut tx,
                &failed,
                EventType::AssetFailed,
                &self.public_url,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.webhooks.notify_one();
        tracing::warn!(asset = %id, %error, "asset failed");
        Ok(())
    }
}

impl TaskHandler for AssetTasks {
    fn task_type(&self) -> TaskType {
        TaskType::Upload
    }

    /// Transcoding a ladder keeps every core busy.
    fn cores(&self) -> usize {
        usize::MAX
    }

    fn run<'a>(&'a self, job: Job) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move { self.process(&job, self).await })
    }

    fn failed<'a>(&'a self, task: &'a Task, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(err) = self.fail_asset(task, error).await {
                tracing::error!(error = format!("{err:#}"), task = %task.id, "failing the asset of a failed upload failed");
            }
        })
    }
}

/// Where an asset's source file comes from.
pub(crate) trait SourceFile: Send + Sync {
    /// Writes the source of the job's `asset` into the file `path`; returns its size and digests.
    fn fetch<'a>(
        &'a self,
        job: &'a Job,
        asset: &'a Asset,
        path: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Received, JobError>>;
}

/// Uploads and imports: the uploaded object, or the URL downloaded.
impl SourceFile for AssetTasks {
    fn fetch<'a>(
        &'a self,
        job: &'a Job,
        _asset: &'a Asset,
        path: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Received, JobError>> {
        Box::pin(self.fetch_source(job, path))
    }
}

/// Copies `objects` of `store`, one after the other, into the file `path`, computing the
/// digests of what it writes. A missing object fails for good, with `missing(key)` as the
/// reason.
pub(crate) async fn download(
    store: &dyn ObjectStore,
    objects: &[String],
    path: &std::path::Path,
    missing: impl Fn(&str) -> String,
) -> Result<super::upload::Received, JobError> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(JobError::scratch)?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut digests = Digests::default();
    for object in objects {
        let mut stream = store
            .stream_range(object, 0, u64::MAX)
            .await
            .map_err(JobError::media_store)?
            .ok_or_else(|| JobError::Fatal(missing(object)))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(JobError::media_store)?;
            digests.update(&chunk);
            file.write_all(&chunk).await.map_err(JobError::scratch)?;
        }
    }
    file.flush().await.map_err(JobError::scratch)?;
    Ok(digests.finish())
}

/// Where a job's HLS and MP4s go.
pub(crate) struct Destination<'a> {
    pub store: &'a dyn ObjectStore,
    /// The folder of the HLS (master playlist, variants, thumbnails): `hls/{playbackId}` for an
    /// asset.
    pub hls: String,
    /// The folder of the static MP4s, when they are made.
    pub mp4: Option<String>,
    /// The asset whose progress is written as the work goes, if any.
    pub asset: Option<&'a Asset>,
    /// Names the work for the transcoder (one stream per job).
    pub name: &'a str,
}

/// What [`AssetTasks::package`] made beside the HLS.
pub(crate) struct Packaged {
    /// The MPEG-TS of each rendition that gets a static MP4.
    pub mp4_sources: Vec<TsOutput>,
    /// Whether the thumbnails and their index were written.
    pub thumbnails: bool,
}

/// A rendition's MPEG-TS file, for its static MP4.
pub(crate) struct TsOutput {
    path: std::path::PathBuf,
    bitrate: u64,
}

/// One variant of the asset's HLS (the source or a rendition) as it is written.
struct VariantOutput {
    dir: String,
    muxer: TsMuxer,
    playlist: MediaPlaylist,
    entry: Option<Variant>,
    bytes: u64,
    seconds: f64,
    peak_bps: u64,
    ts_file: Option<(std::path::PathBuf, tokio::io::BufWriter<tokio::fs::File>)>,
}

impl VariantOutput {
    fn new(dir: String) -> VariantOutput {
        VariantOutput {
            dir,
            muxer: TsMuxer::new(),
            playlist: MediaPlaylist::vod(),
            entry: None,
            bytes: 0,
            seconds: 0.0,
            peak_bps: 0,
            ts_file: None,
        }
    }

    /// Muxes segment `n` and stores it below `base` (and appends it to the MP4's MPEG-TS, if
    /// any).
    async fn write(
        &mut self,
        store: &dyn ObjectStore,
        base: &str,
        n: u64,
        segment: &Segment,
    ) -> Result<(), JobError> {
        let ts = self
            .muxer
            .mux(segment)
            .map_err(|e| JobError::Fatal(format!("packaging a segment failed: {e}")))?;
        let name = format!("{n}.ts");
        let seconds = segment.duration_ms.max(0) as f64 / 1000.0;
        if self.entry.is_none() {
            self.entry = Some(variant_of(segment, &format!("{}/index.m3u8", self.dir)));
        }
        self.bytes += ts.len() as u64;
        self.seconds += seconds;
        if seconds > 0.0 {
            self.peak_bps = self.peak_bps.max((ts.len() as f64 * 8.0 / seconds) as u64);
        }
        if let Some((_, file)) = &mut self.ts_file {
            file.write_all(&ts).await.map_err(JobError::scratch)?;
        }
        store
            .put(&format!("{base}/{}/{name}", self.dir), ts)
            .await
            .map_err(JobError::media_store)?;
        self.playlist.push(name, seconds, segment.discontinuity);
        Ok(())
    }

    fn average_bps(&self) -> u64 {
        if self.seconds > 0.0 {
            (self.bytes as f64 * 8.0 / self.seconds) as u64
        } else {
            0
        }
    }

    fn master_entry(&self) -> Option<Variant> {
        let average = self.average_bps();
        self.entry.clone().map(|entry| Variant {
            bandwidth: self.peak_bps.max(average),
            average_bandwidth: Some(average),
            ..entry
        })
    }
}

/// A rendition's folder: its profile name, reduced to characters safe in a key.
fn dir_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if safe.is_empty() || safe == "source" {
        format!("r_{safe}")
    } else {
        safe
    }
}

fn transcode_error(err: TranscodeError) -> JobError {
    match err {
        TranscodeError::Network(_) | TranscodeError::Unavailable(_) | TranscodeError::Job(_) => {
            JobError::Retriable(format!("transcoding: {err}"))
        }
        other => JobError::Fatal(format!("transcoding failed: {other}")),
    }
}
