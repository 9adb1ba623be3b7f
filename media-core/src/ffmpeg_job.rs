//! The one way FFmpeg work runs: on a blocking thread, under a deadline, cancellable, measured,
//! with one error type for a job that was stopped.
//!
//! FFmpeg's calls block and some loop for as long as their input lasts, so a pathological input
//! (a file that never ends, a pipe that never delivers, a crafted stream that decodes slowly)
//! would otherwise hold a worker forever. Every job gets a [`JobControl`] that FFmpeg work
//! consults in three places:
//! - FFmpeg's own I/O polls it through the interrupt callback of inputs opened with
//!   [`open_input`], whose reads never block in the kernel;
//! - decode, encode and remux loops call [`JobControl::check`] between packets and frames, which
//!   the interrupt callback cannot reach;
//! - [`run`] answers the caller at the deadline whatever the thread is doing, and tells the thread
//!   to stop when the caller gives up (its future is dropped).
//!
//! Metrics (through the `metrics` facade; the binary decides where they go):
//! `studio_ffmpeg_jobs_total{kind,result}`, `studio_ffmpeg_job_seconds{kind}` and
//! `studio_ffmpeg_jobs_running{kind}` (threads still working, including any that overran).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ffmpeg::format::context::{Input, StreamIo};
use ffmpeg_next as ffmpeg;

/// How long a read of a pipe with nothing to deliver naps before FFmpeg checks the job again.
const EMPTY_READ_NAP: Duration = Duration::from_millis(5);
/// No deadline is longer than this, however long the media (keeps `Instant` arithmetic sane).
const LONGEST_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// A job whose thread ends this long after its deadline is logged: some call did not check in.
const OVERRUN_WORTH_A_WARNING: Duration = Duration::from_secs(1);

/// What a job does, for errors, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// One live segment into its renditions.
    Transcode,
    /// MPEG-TS into MP4, packets copied.
    Remux,
    /// Reading a file's container and track facts.
    Probe,
    /// Reading a VOD source into segments (it waits for them to be transcoded, too).
    Demux,
    /// A JPEG of a segment's first picture.
    Thumbnail,
    /// Opening a test encoder to learn which H.264 encoder works (NVENC or libx264), at start-up.
    EncoderProbe,
}

impl JobKind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Transcode => "transcode",
            JobKind::Remux => "remux",
            JobKind::Probe => "probe",
            JobKind::Demux => "demux",
            JobKind::Thumbnail => "thumbnail",
            JobKind::EncoderProbe => "encoder_probe",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Transcode => "transcoding the segment",
            JobKind::Remux => "remuxing to MP4",
            JobKind::Probe => "probing the media",
            JobKind::Demux => "reading the source",
            JobKind::Thumbnail => "making a thumbnail",
            JobKind::EncoderProbe => "opening a test encoder",
        })
    }
}

/// Why a job produced no result of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job ran past its deadline and was stopped.
    #[error("{what} exceeded its deadline of {after:?}")]
    DeadlineExceeded { what: JobKind, after: Duration },
    /// The caller stopped waiting for the result.
    #[error("{what} was cancelled")]
    Cancelled { what: JobKind },
    /// The job's thread panicked, or the runtime is shutting down.
    #[error("{what} failed in its worker: {reason}")]
    WorkerFailed { what: JobKind, reason: String },
}

/// How long a job may take, from how much media it handles: `per_media_second` for each second
/// of media, and never less than `floor` (opening codecs and files costs the same for a short
/// input as for a long one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlinePolicy {
    pub floor: Duration,
    pub per_media_second: Duration,
}

impl DeadlinePolicy {
    /// A live segment gets four times its duration, and at least 5 s: a transcode slower than
    /// that is useless to a live viewer and only delays the next segment.
    pub const SEGMENT_TRANSCODE: DeadlinePolicy = DeadlinePolicy {
        floor: Duration::from_secs(5),
        per_media_second: Duration::from_secs(4),
    };
    /// A remux copies packets: it must run at least 20 times faster than real time (a day of
    /// recording gets 72 minutes), and gets at least a minute.
    pub const REMUX: DeadlinePolicy = DeadlinePolicy {
        floor: Duration::from_secs(60),
        per_media_second: Duration::from_millis(50),
    };
    /// A probe reads headers and an index: 30 s whatever the length.
    /// Reading a VOD source paces itself on its transcoding (segments are handed over one by
    /// one): up to 20 s per second of media, for a CPU transcoder on a small machine.
    pub const VOD_SOURCE: DeadlinePolicy = DeadlinePolicy {
        floor: Duration::from_secs(120),
        per_media_second: Duration::from_secs(20),
    };

    pub const PROBE: DeadlinePolicy = DeadlinePolicy {
        floor: Duration::from_secs(30),
        per_media_second: Duration::ZERO,
    };

    /// The deadline for `media` of media.
    pub fn for_media(&self, media: Duration) -> Duration {
        let proportional = self.per_media_second.as_secs_f64() * media.as_secs_f64();
        let proportional = Duration::try_from_secs_f64(proportional).unwrap_or(LONGEST_DEADLINE);
        self.floor.max(proportional).min(LONGEST_DEADLINE)
    }
}

/// What FFmpeg work consults to know whether to go on: the job's deadline and whether its
/// caller still waits. Cheap to clone; every clone sees the same job.
#[derive(Debug, Clone)]
pub struct JobControl(Arc<Control>);

#[derive(Debug)]
struct Control {
    kind: JobKind,
    budget: Duration,
    deadline: Instant,
    cancelled: AtomicBool,
}

impl JobControl {
    /// A job of `kind` that must be done within `budget` from now.
    pub fn new(kind: JobKind, budget: Duration) -> JobControl {
        let budget = budget.min(LONGEST_DEADLINE);
        JobControl(Arc::new(Control {
            kind,
            budget,
            deadline: Instant::now() + budget,
            cancelled: AtomicBool::new(false),
        }))
    }

    pub fn kind(&self) -> JobKind {
        self.0.kind
    }

    /// `Err` once the job should stop: cancelled, or past its deadline. Call it between packets
    /// and frames; it costs a clock read.
    pub fn check(&self) -> Result<(), JobError> {
        if self.0.cancelled.load(Ordering::Acquire) {
            return Err(JobError::Cancelled { what: self.0.kind });
        }
        if Instant::now() >= self.0.deadline {
            return Err(self.deadline_exceeded());
        }
        Ok(())
    }

    /// `err`, unless the job was told to stop: then the reason it was stopped, since a call
    /// interrupted by this job fails with an error of its own (FFmpeg's "immediate exit
    /// requested") that says nothing of why.
    pub fn explain<E: From<JobError>>(&self, err: E) -> E {
        match self.check() {
            Err(stopped) => stopped.into(),
            Ok(()) => err,
        }
    }

    /// Tells the work to stop at its next check.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
    }

    /// FFmpeg's interrupt callback for this job: `true` aborts the blocking call in progress.
    pub fn interrupt_callback(&self) -> impl FnMut() -> bool + Send + 'static {
        let control = self.clone();
        move || control.check().is_err()
    }

    fn deadline_exceeded(&self) -> JobError {
        JobError::DeadlineExceeded {
            what: self.0.kind,
            after: self.0.budget,
        }
    }
}

/// Runs `work` on Tokio's blocking pool under a deadline of `budget`.
///
/// The answer comes by the deadline at the latest: `JobError::DeadlineExceeded` if the work is
/// not done, even if its thread has not noticed yet (it stops at its next check). Dropping the
/// returned future cancels the work the same way. When the work fails after it was told to
/// stop, the failure (typically FFmpeg's "immediate exit requested") is reported as the reason
/// it was stopped.
pub async fn run<T, E, F>(kind: JobKind, budget: Duration, work: F) -> Result<T, E>
where
    F: FnOnce(&JobControl) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<JobError> + Send + 'static,
{
    let control = JobControl::new(kind, budget);
    let started = Instant::now();
    let mut caller = Caller {
        control: control.clone(),
        started,
        answered: false,
    };
    let thread_control = control.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _running = RunningGauge::enter(kind);
        let outcome = match work(&thread_control) {
            Ok(value) => Ok(value),
            Err(err) => match thread_control.check() {
                Err(stopped) => Err(Stopped::Job(stopped)),
                Ok(()) => Err(Stopped::Failed(err)),
            },
        };
        let overrun = started.elapsed().saturating_sub(thread_control.0.budget);
        if overrun >= OVERRUN_WORTH_A_WARNING {
            tracing::warn!(
                job = kind.as_str(),
                overrun_ms = overrun.as_millis() as u64,
                "an FFmpeg job ended well after its deadline"
            );
        }
        outcome
    });
    let deadline = tokio::time::Instant::from_std(control.0.deadline);
    let outcome = match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join)) => Err(Stopped::Job(JobError::WorkerFailed {
            what: kind,
            reason: if join.is_panic() {
                "it panicked".into()
            } else {
                "the runtime is shutting down".into()
            },
        })),
        // The thread sees the deadline at its next check too.
        Err(_) => Err(Stopped::Job(control.deadline_exceeded())),
    };
    caller.answer(match &outcome {
        Ok(_) => "ok",
        Err(Stopped::Failed(_)) => "failed",
        Err(Stopped::Job(JobError::DeadlineExceeded { .. })) => "deadline_exceeded",
        Err(Stopped::Job(JobError::Cancelled { .. })) => "cancelled",
        Err(Stopped::Job(JobError::WorkerFailed { .. })) => "worker_failed",
    });
    outcome.map_err(|stopped| match stopped {
        Stopped::Job(err) => E::from(err),
        Stopped::Failed(err) => err,
    })
}

/// How a job ended without a value: stopped by its control, or failed on its own.
enum Stopped<E> {
    Job(JobError),
    Failed(E),
}

/// The caller's side of a job: records how it ended, and cancels it when the caller's future
/// goes away unanswered, so that its thread stops too.
struct Caller {
    control: JobControl,
    started: Instant,
    answered: bool,
}

impl Caller {
    fn answer(&mut self, result: &'static str) {
        self.answered = true;
        let kind = self.control.kind().as_str();
        metrics::counter!("studio_ffmpeg_jobs_total", "kind" => kind, "result" => result)
            .increment(1);
        metrics::histogram!("studio_ffmpeg_job_seconds", "kind" => kind)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        if !self.answered {
            self.control.cancel();
            self.answer("cancelled");
        }
    }
}

/// Counts a job's thread in `studio_ffmpeg_jobs_running` for as long as it works.
struct RunningGauge(JobKind);

impl RunningGauge {
    fn enter(kind: JobKind) -> RunningGauge {
        metrics::gauge!("studio_ffmpeg_jobs_running", "kind" => kind.as_str()).increment(1.0);
        RunningGauge(kind)
    }
}

impl Drop for RunningGauge {
    fn drop(&mut self) {
        metrics::gauge!("studio_ffmpeg_jobs_running", "kind" => self.0.as_str()).decrement(1.0);
    }
}

/// Opens `path` for demuxing under `job`: every read goes through the job's interrupt check, and
/// no read blocks in the kernel (a FIFO or pipe that has nothing to deliver is polled instead),
/// so a stalled or endless input ends at the deadline.
pub fn open_input(path: &Path, job: &JobControl) -> Result<Input, ffmpeg::Error> {
    let file = OpenOptions::new()
        .read(true)
        // Opening a FIFO without O_NONBLOCK waits for a writer, out of reach of any check.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    let regular = file.metadata().map_err(io_error)?.is_file();
    let file = NonBlockingFile(file);
    // Only a regular file can seek; anything else is read as the stream it is.
    let io = if regular {
        StreamIo::from_read_seek(file)?
    } else {
        StreamIo::from_read(file)?
    };
    // The name only helps FFmpeg guess the format from the extension.
    ffmpeg::format::input_from_stream_with_interrupt(
        io,
        path.to_str(),
        None,
        job.interrupt_callback(),
    )
}

fn io_error(err: io::Error) -> ffmpeg::Error {
    ffmpeg::Error::Other {
        errno: err.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// A file opened with `O_NONBLOCK`. Regular files ignore the flag; a pipe with nothing to read
/// answers `WouldBlock`, which becomes a short nap and `Interrupted`: FFmpeg's custom I/O checks
/// the interrupt callback and then reads again.
struct NonBlockingFile(File);

impl Read for NonBlockingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(EMPTY_READ_NAP);
                Err(io::ErrorKind::Interrupted.into())
            }
            other => other,
        }
    }
}

impl Seek for NonBlockingFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Job(JobError),
        Own,
    }

    impl From<JobError> for TestError {
        fn from(err: JobError) -> Self {
            TestError::Job(err)
        }
    }

    /// Work that checks in every millisecond until told to stop, and says when it ended.
    fn checking_work(ended: Arc<AtomicBool>) -> impl FnOnce(&JobControl) -> Result<(), TestError> {
        move |job| {
            let result = loop {
                if let Err(err) = job.check() {
                    break Err(err.into());
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            ended.store(true, Ordering::Release);
            result
        }
    }

    async fn until(flag: &AtomicBool, within: Duration) -> bool {
        let start = Instant::now();
        while !flag.load(Ordering::Acquire) {
            if start.elapsed() > within {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    #[test]
    fn deadlines_grow_with_the_media_above_a_floor() {
        let live = DeadlinePolicy::SEGMENT_TRANSCODE;
        assert_eq!(
            live.for_media(Duration::from_secs(2)),
            Duration::from_secs(8)
        );
        assert_eq!(
            live.for_media(Duration::from_millis(200)),
            Duration::from_secs(5)
        );
        let remux = DeadlinePolicy::REMUX;
        assert_eq!(
            remux.for_media(Duration::from_secs(10)),
            Duration::from_secs(60)
        );
        assert_eq!(
            remux.for_media(Duration::from_secs(24 * 3600)),
            Duration::from_secs(72 * 60)
        );
        assert_eq!(
            remux.for_media(Duration::MAX),
            LONGEST_DEADLINE,
            "absurd durations do not overflow"
        );
        assert_eq!(
            DeadlinePolicy::PROBE.for_media(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn work_past_its_deadline_is_answered_at_the_deadline_and_stops() {
        let ended = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let result = run(
            JobKind::Remux,
            Duration::from_millis(100),
            checking_work(ended.clone()),
        )
        .await;
        assert_eq!(
            result,
            Err(TestError::Job(JobError::DeadlineExceeded {
                what: JobKind::Remux,
                after: Duration::from_millis(100)
            }))
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            until(&ended, Duration::from_secs(2)).await,
            "the thread stops"
        );
    }

    #[tokio::test]
    async fn the_deadline_is_answered_even_if_the_work_never_checks() {
        let release = Arc::new(AtomicBool::new(false));
        let blocked = release.clone();
        let started = Instant::now();
        let result: Result<(), TestError> =
            run(JobKind::Probe, Duration::from_millis(100), move |_| {
                while !blocked.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
            .await;
        assert!(
            matches!(
                result,
                Err(TestError::Job(JobError::DeadlineExceeded { .. }))
            ),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        release.store(true, Ordering::Release);
    }

    #[tokio::test]
    async fn dropping_the_future_cancels_the_work() {
        let ended = Arc::new(AtomicBool::new(false));
        let job = run(
            JobKind::Transcode,
            Duration::from_secs(60),
            checking_work(ended.clone()),
        );
        let timed_out = tokio::time::timeout(Duration::from_millis(50), job).await;
        assert!(timed_out.is_err());
        assert!(
            until(&ended, Duration::from_secs(2)).await,
            "the thread stops when its caller leaves"
        );
    }

    #[tokio::test]
    async fn own_failures_and_values_pass_through() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let value = run(JobKind::Probe, Duration::from_secs(5), move |job| {
            job.check()?;
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, TestError>(7)
        })
        .await;
        assert_eq!(value, Ok(7));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let failed: Result<(), TestError> = run(JobKind::Probe, Duration::from_secs(5), |_| {
            Err(TestError::Own)
        })
        .await;
        assert_eq!(failed, Err(TestError::Own));
        let panicked: Result<(), TestError> =
            run(JobKind::Probe, Duration::from_secs(5), |_| panic!("boom")).await;
        assert!(
            matches!(panicked, Err(TestError::Job(JobError::WorkerFailed { .. }))),
            "{panicked:?}"
        );
    }
}
