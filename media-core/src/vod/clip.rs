//! Clips: a stretch of wall-clock time cut from a live session's stored segments, without
//! re-encoding.
//!
//! A session's segments are MPEG-TS files that each begin with a keyframe, and each is known by
//! the wall-clock time of its first frame (its `EXT-X-PROGRAM-DATE-TIME`, the times players
//! compute clip requests from). [`ClipCutter`] takes them in order and writes one MPEG-TS
//! stream holding the clip:
//!
//! - It starts at the video keyframe nearest to the requested start (before or after it), since
//!   a decoder can only start at a keyframe.
//! - It lasts as long as asked: the end is moved by as much as the start was, and video is cut
//!   there at a frame boundary that leaves every kept frame decodable (before the first
//!   reference frame shown at or after the end; the B-frames that follow it in decode order go
//!   with it). So the clip's duration matches the request to a frame or two, and its content is
//!   shifted by at most half a GOP. A range that begins before the session's media or ends after
//!   it is cut short instead.
//! - Audio is kept from the clip's start to its end; an audio-only session is cut at frames.
//!
//! Memory holds one GOP while the start is looked for, and one segment after.

use bytes::Bytes;

use crate::flv::AacConfig;
use crate::hls::ts::{TsError, TsMuxer};
use crate::mpegts::{TsDemuxError, demux_file};
use crate::packet::{Packet, PacketKind, Track};
use crate::segment::Segment;

/// The most media held while looking for the start (one GOP): a stream whose keyframes are
/// further apart than this starts at the next keyframe instead.
const MAX_GOP_BYTES: usize = 64 << 20;

/// Why a clip could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("a segment of the session could not be read: {0}")]
    Demux(#[from] TsDemuxError),
    #[error("the clip could not be packaged: {0}")]
    Mux(#[from] TsError),
    #[error("the session holds no media between the clip's start and end")]
    Empty,
}

/// What the cut clip spans, in wall-clock milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSpan {
    /// The time of its first frame.
    pub start_ms: i64,
    /// The time of the end of its last frame.
    pub end_ms: i64,
}

/// Cuts one clip; see the module's documentation.
#[derive(Debug)]
pub struct ClipCutter {
    /// The requested range (wall-clock ms).
    start_ms: i64,
    end_ms: i64,
    /// The frames since the last keyframe at or before the requested start, while the start is
    /// looked for; with the time of that keyframe.
    gop: Vec<Packet>,
    gop_time: Option<i64>,
    gop_bytes: usize,
    /// Once started: the clip's start and end (wall-clock ms).
    cut: Option<(i64, i64)>,
    /// The video is cut off (the end was reached).
    video_ended: bool,
    /// The earliest and latest presentation times of the kept video and its frame count: the
    /// latest tells reference frames from B-frames, all three the frame interval.
    video_span: Option<(i64, i64, i64)>,
    audio_ended: bool,
    /// An audio frame's duration (1024 samples).
    audio_frame_ms: f64,
    has_video: bool,
    has_audio: bool,
    /// The decoder configurations in force.
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    /// The end of the last kept frame (wall-clock ms), from its track's frame interval.
    last_end: i64,
    muxer: TsMuxer,
    sequence: u64,
}

impl ClipCutter {
    /// A cutter of the wall-clock range `[start_ms, end_ms)`.
    pub fn new(start_ms: i64, end_ms: i64) -> ClipCutter {
        ClipCutter {
            start_ms,
            end_ms: end_ms.max(start_ms + 1),
            gop: Vec::new(),
            gop_time: None,
            gop_bytes: 0,
            cut: None,
            video_ended: false,
            video_span: None,
            audio_ended: false,
            audio_frame_ms: 21.0,
            has_video: false,
            has_audio: false,
            video_config: None,
            audio_config: None,
            last_end: i64::MIN,
            muxer: TsMuxer::new(),
            sequence: 0,
        }
    }

    /// True once the clip is complete: later segments would add nothing.
    pub fn is_done(&self) -> bool {
        self.cut.is_some()
            && (!self.has_video || self.video_ended)
            && (!self.has_audio || self.audio_ended)
    }

    /// Takes the next stored segment (an MPEG-TS file whose first frame was at wall-clock
    /// `program_date_ms`) and returns the MPEG-TS to append to the clip, if any.
    pub fn push(&mut self, ts: &[u8], program_date_ms: i64) -> Result<Option<Bytes>, ClipError> {
        let packets = demux_file(ts)?;
        // The segment's first picture is shown at its program date (its keyframe; the first
        // audio frame when there is no video), as players place it; every other frame is placed
        // on the wall clock from its presentation time's distance to that one.
        let first = |track: Option<Track>| {
            packets
                .iter()
                .filter(|p| p.kind == PacketKind::Frame && track.is_none_or(|t| p.track == t))
                .map(|p| p.pts_ms)
                .min()
        };
        let Some(base) = first(Some(Track::Video)).or_else(|| first(None)) else {
            return Ok(None);
        };
        let shift = program_date_ms - base;
        // Whether the session has video decides how the start is found: know it before the
        // first frame (audio may come first).
        for packet in &packets {
            match (packet.kind, packet.track) {
                (PacketKind::Frame, Track::Video) => self.has_video = true,
                (PacketKind::Frame, Track::Audio) => self.has_audio = true,
                _ => {}
            }
        }
        let mut kept: Vec<Packet> = Vec::new();
        for mut packet in packets {
            match (packet.kind, packet.track) {
                (PacketKind::Config, Track::Video) => self.video_config = Some(packet.data),
                (PacketKind::Config, Track::Audio) => {
                    if let Ok(config) = AacConfig::parse(&packet.data)
                        && config.sample_rate > 0
                    {
                        self.audio_frame_ms = 1_024_000.0 / f64::from(config.sample_rate);
                    }
                    self.audio_config = Some(packet.data);
                }
                (PacketKind::Frame, _) => {
                    packet.dts_ms += shift;
                    packet.pts_ms += shift;
                    self.frame(packet, &mut kept);
                }
            }
        }
        self.package(kept)
    }

    /// The rest of the clip, and what it spans. Fails when no frame fell in the range.
    pub fn finish(&mut self) -> Result<(Option<Bytes>, ClipSpan), ClipError> {
        // The requested start lies after every keyframe seen: start at the last one if its GOP
        // reaches the start (else the range is past the media).
        let mut tail = None;
        let reaches = self.gop.iter().any(|p| p.pts_ms >= self.start_ms);
        if self.cut.is_none() && self.gop_time.is_some() && reaches {
            let mut kept = Vec::new();
            self.begin_at_gop(&mut kept);
            tail = self.package(kept)?;
        }
        let Some((start, _)) = self.cut else {
            return Err(ClipError::Empty);
        };
        if self.last_end <= start {
            return Err(ClipError::Empty);
        }
        Ok((
            tail,
            ClipSpan {
                start_ms: start,
                end_ms: self.last_end,
            },
        ))
    }

    /// Decides what happens to one frame (its timestamps on the wall clock).
    fn frame(&mut self, packet: Packet, kept: &mut Vec<Packet>) {
        if self.cut.is_none() {
            let time = packet.pts_ms;
            if !self.has_video {
                // Audio only: start at the first frame at or after the start (no later than
                // asked, whatever came before: audio frames are short).
                if time < self.start_ms {
                    return;
                }
                self.cut = Some((time, self.end_ms));
            } else if packet.is_video_keyframe() && time > self.start_ms {
                // A keyframe after the requested start: start here or at the one before,
                // whichever is nearer.
                match self.gop_time {
                    Some(before) if self.start_ms - before <= time - self.start_ms => {
                        self.begin_at_gop(kept);
                    }
                    previous => {
                        // The audio held may reach past this keyframe (it is interleaved
                        // a little ahead of the video).
                        let held = std::mem::take(&mut self.gop);
                        self.forget_gop();
                        if previous.is_some() {
                            self.begin(time);
                        } else {
                            // The range begins before the media: the clip is what is left of
                            // it, not a clip of the same length later on.
                            self.cut = Some((time, self.end_ms));
                        }
                        for audio in held.into_iter().filter(|p| p.track == Track::Audio) {
                            self.keep(audio, kept);
                        }
                    }
                }
            } else {
                self.hold(packet);
                return;
            }
        }
        self.keep(packet, kept);
    }

    /// Holds a frame while the start is looked for: a keyframe at or before the start begins a
    /// new GOP; other frames join the GOP held, if any.
    fn hold(&mut self, packet: Packet) {
        if packet.is_video_keyframe() {
            self.forget_gop();
            self.gop_time = Some(packet.pts_ms);
        } else if self.gop_time.is_none() {
            return;
        }
        self.gop_bytes += packet.data.len();
        self.gop.push(packet);
        if self.gop_bytes > MAX_GOP_BYTES {
            self.forget_gop();
        }
    }

    fn forget_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
        self.gop_time = None;
    }

    /// Starts the clip at the keyframe held and keeps the frames held since.
    fn begin_at_gop(&mut self, kept: &mut Vec<Packet>) {
        let start = self.gop_time.expect("a keyframe is held");
        self.begin(start);
        let held = std::mem::take(&mut self.gop);
        self.forget_gop();
        for packet in held {
            self.keep(packet, kept);
        }
    }

    fn begin(&mut self, start: i64) {
        self.cut = Some((start, start + (self.end_ms - self.start_ms)));
    }

    /// Keeps a frame if it belongs to the clip.
    fn keep(&mut self, packet: Packet, kept: &mut Vec<Packet>) {
        let (start, end) = self.cut.expect("the clip has started");
        let time = packet.pts_ms;
        match packet.track {
            Track::Video => {
                if self.video_ended {
                    return;
                }
                // A reference picture shown at or after the end ends the video: the B-frames
                // after it in decode order may refer to it.
                let latest = self.video_span.map(|(_, last, _)| last);
                if time >= end && latest.is_none_or(|last| time > last) {
                    self.video_ended = true;
                    return;
                }
                // Leading pictures of an open GOP belong before the start.
                if time < start {
                    return;
                }
                let (first, last, count) = self.video_span.unwrap_or((time, time, 0));
                let span = (first.min(time), last.max(time), count + 1);
                self.video_span = Some(span);
                // The last frame lasts as long as the average frame so far (1/30 s at first).
                let interval = if span.2 > 1 {
                    (span.1 - span.0) / (span.2 - 1)
                } else {
                    33
                };
                self.last_end = self.last_end.max(span.1 + interval);
            }
            Track::Audio => {
                if time >= end {
                    self.audio_ended = true;
                    return;
                }
                if time < start {
                    return;
                }
                self.last_end = self.last_end.max(time + self.audio_frame_ms.round() as i64);
            }
        }
        kept.push(packet);
    }

    /// Muxes the frames kept from one segment. Their timestamps are wall-clock times; the clip's
    /// timeline starts at its first frame.
    fn package(&mut self, kept: Vec<Packet>) -> Result<Option<Bytes>, ClipError> {
        let Some((start, _)) = self.cut else {
            return Ok(None);
        };
        if kept.is_empty() {
            return Ok(None);
        }
        let has_video = kept.iter().any(|p| p.track == Track::Video);
        let has_audio = kept.iter().any(|p| p.track == Track::Audio);
        let mut packets = Vec::with_capacity(kept.len() + 2);
        for (wanted, config, track) in [
            (has_video, &self.video_config, Track::Video),
            (has_audio, &self.audio_config, Track::Audio),
        ] {
            if let (true, Some(data)) = (wanted, config) {
                packets.push(Packet {
                    track,
                    kind: PacketKind::Config,
                    dts_ms: 0,
                    pts_ms: 0,
                    keyframe: false,
                    data: data.clone(),
                });
            }
        }
        let first = kept.iter().map(|p| p.dts_ms).min().unwrap_or(start) - start;
        let last = kept.iter().map(|p| p.pts_ms).max().unwrap_or(start) - start;
        packets.extend(kept.into_iter().map(|mut p| {
            p.dts_ms -= start;
            p.pts_ms -= start;
            p
        }));
        let segment = Segment::from_packets(self.sequence, first, last - first + 1, false, packets);
        self.sequence += 1;
        Ok(Some(self.muxer.mux(&segment)?))
    }
}
