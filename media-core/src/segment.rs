//! Keyframe-aligned segmenting of a live packet stream.
//!
//! A segment is cut only at a video keyframe, and only once at least the target duration has
//! passed since the segment started: a GOP is never split (every segment starts decodable), and
//! an encoder with long GOPs simply gets longer segments. Audio-only streams have no keyframes,
//! so they are cut on time at the first frame at or after the target.
//!
//! Durations come from media timestamps, never the wall clock, so a segment reports what a
//! player will actually play. Timestamps that jump (an encoder restart, a clock reset, a long
//! pause) are folded into one continuous timeline per track so durations stay honest; the
//! segment holding the jump is flagged as a discontinuity.

use std::time::Duration;

use bytes::Bytes;

use crate::packet::{Packet, PacketKind, Track};

/// Tuning for [`Segmenter`].
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// The duration a segment aims for; cuts happen at the first keyframe at or after it.
    pub target: Duration,
    /// How far before the target a keyframe may still cut. Millisecond rounding makes a
    /// keyframe meant for 2.000 s arrive at 1.999 s; without slack that GOP would join the
    /// next segment and double its length.
    pub early_cut_tolerance: Duration,
    /// Longest segment accepted. A video stream whose GOP exceeds it (or that stops sending
    /// keyframes) is an error rather than an ever-growing segment held in memory.
    pub max_duration: Duration,
    /// Most payload bytes one segment may hold, for the same reason.
    pub max_bytes: u64,
    /// A forward timestamp jump larger than this within a track is treated as a
    /// discontinuity rather than as media time.
    pub max_gap: Duration,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            target: Duration::from_secs(2),
            early_cut_tolerance: Duration::from_millis(20),
            max_duration: Duration::from_secs(30),
            max_bytes: 256 * 1024 * 1024,
            max_gap: Duration::from_secs(10),
        }
    }
}

/// Why the segmenter gave up on a stream. After an error the stream should be ended: the
/// segmenter's state is no longer meaningful.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// No keyframe arrived within `max_duration` of the segment start.
    #[error(
        "no keyframe within {limit_ms} ms (segment started at {start_ms} ms); shorten the encoder's keyframe interval"
    )]
    GopTooLong {
        /// The configured `max_duration` in milliseconds.
        limit_ms: i64,
        /// Start of the segment that grew too long.
        start_ms: i64,
    },
    /// The open segment holds more than `max_bytes` of payload.
    #[error("segment exceeds {limit_bytes} bytes; lower the bitrate or the keyframe interval")]
    SegmentTooLarge {
        /// The configured `max_bytes`.
        limit_bytes: u64,
    },
}

impl SegmentError {
    /// A short, stable label (for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            SegmentError::GopTooLong { .. } => "gop_too_long",
            SegmentError::SegmentTooLarge { .. } => "segment_too_large",
        }
    }
}

/// A finished segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// 0 for the first segment of the stream, then +1 each.
    pub sequence: u64,
    /// Timestamp of the first packet, on the segmenter's continuous timeline (ms).
    pub start_ms: i64,
    /// Start of the next segment minus this start; for the last segment, the end of its last
    /// frame (its timestamp plus the track's frame interval).
    pub duration_ms: i64,
    /// Sum of the packets' payload sizes (elementary stream bytes, no container overhead).
    pub size_bytes: u64,
    /// True when the input timestamps jumped inside this segment (or right at its start) and
    /// were retimed; an HLS packager marks it with `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The AVCDecoderConfigurationRecord that decodes the video frames.
    pub video_config: Option<Bytes>,
    /// The AudioSpecificConfig that decodes the audio frames.
    pub audio_config: Option<Bytes>,
    /// Frames in arrival order, retimed onto the continuous timeline. For video streams the
    /// first one is a keyframe.
    pub packets: Vec<Packet>,
}

impl Segment {
    /// A segment of demuxed `packets` that belong together (a file holding one segment): the
    /// decoder configurations become the segment's (the first one of each track), the frames its
    /// packets, in the given order.
    pub fn from_packets(
        sequence: u64,
        start_ms: i64,
        duration_ms: i64,
        discontinuity: bool,
        packets: Vec<Packet>,
    ) -> Segment {
        let mut video_config = None;
        let mut audio_config = None;
        let mut frames = Vec::with_capacity(packets.len());
        for packet in packets {
            match (packet.kind, packet.track) {
                (PacketKind::Config, Track::Video) => {
                    video_config.get_or_insert(packet.data);
                }
                (PacketKind::Config, Track::Audio) => {
                    audio_config.get_or_insert(packet.data);
                }
                (PacketKind::Frame, _) => frames.push(packet),
            }
        }
        Segment {
            sequence,
            start_ms,
            duration_ms,
            size_bytes: frames.iter().map(|p| p.data.len() as u64).sum(),
            discontinuity,
            video_config,
            audio_config,
            packets: frames,
        }
    }

    /// Video frames per second over the segment's duration; `None` without video frames.
    pub fn video_frame_rate(&self) -> Option<f64> {
        let frames = self
            .packets
            .iter()
            .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
            .count();
        (frames > 0).then(|| frames as f64 * 1000.0 / self.duration_ms.max(1) as f64)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct TrackClock {
    /// Last output dts.
    last_out: Option<i64>,
    /// Added to input timestamps to get output timestamps.
    offset: i64,
    /// Last positive dts step: the frame interval used to bridge jumps and end the stream.
    last_delta: Option<i64>,
}

#[derive(Debug)]
struct OpenSegment {
    start_ms: i64,
    size_bytes: u64,
    discontinuity: bool,
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    packets: Vec<Packet>,
}

/// Groups packets into [`Segment`]s. Feed every packet of one stream to [`Segmenter::push`]
/// in arrival order, then call [`Segmenter::finish`] when the stream ends.
#[derive(Debug)]
pub struct Segmenter {
    target_ms: i64,
    tolerance_ms: i64,
    max_duration_ms: i64,
    max_bytes: u64,
    max_gap_ms: i64,
    next_sequence: u64,
    /// Once any video arrives the stream is cut at keyframes only.
    has_video: bool,
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    /// A new video config arrived since the open segment began: cut at the next keyframe
    /// whatever the duration, so each segment decodes with a single config.
    video_config_changed: bool,
    /// A timestamp jump happened while no segment was open.
    pending_discontinuity: bool,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    open: Option<OpenSegment>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Segmenter {
    /// A segmenter for a new stream.
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            target_ms: ms(config.target),
            tolerance_ms: ms(config.early_cut_tolerance),
            max_duration_ms: ms(config.max_duration),
            max_bytes: config.max_bytes,
            max_gap_ms: ms(config.max_gap),
            next_sequence: 0,
            has_video: false,
            video_config: None,
            audio_config: None,
            video_config_changed: false,
            pending_discontinuity: false,
            video_clock: TrackClock::default(),
            audio_clock: TrackClock::default(),
            open: None,
        }
    }

    /// Adds one packet; returns the segment it completed, if any.
    pub fn push(&mut self, packet: Packet) -> Result<Option<Segment>, SegmentError> {
        match packet.kind {
            PacketKind::Config => Ok(self.push_config(packet)),
            PacketKind::Frame => self.push_frame(packet),
        }
    }

    /// Payload bytes of the segment still open: what this segmenter holds of the stream.
    pub fn buffered_bytes(&self) -> u64 {
        self.open.as_ref().map_or(0, |open| open.size_bytes)
    }

    /// Ends the stream; returns the last, partial segment if it holds any frames.
    pub fn finish(&mut self) -> Option<Segment> {
        let open = self.open.take()?;
        let end = [self.video_clock, self.audio_clock]
            .iter()
            .filter_map(|c| Some(c.last_out? + c.last_delta.unwrap_or(0)))
            .max()
            .unwrap_or(open.start_ms);
        Some(self.close(open, end))
    }

    fn push_config(&mut self, packet: Packet) -> Option<Segment> {
        let mut finished = None;
        match packet.track {
            Track::Video => {
                finished = self.start_video();
                if self.video_config.as_ref() != Some(&packet.data) {
                    if let Some(open) = &mut self.open {
                        if open.packets.iter().any(|p| p.track == Track::Video) {
                            self.video_config_changed = true;
                        } else {
                            open.video_config = Some(packet.data.clone());
                        }
                    }
                    self.video_config = Some(packet.data);
                }
            }
            Track::Audio => {
                if let Some(open) = &mut self.open
                    && !open.packets.iter().any(|p| p.track == Track::Audio)
                {
                    open.audio_config = Some(packet.data.clone());
                }
                // Audio has no keyframes to cut at; a changed config applies from the next
                // segment, which is the best a mid-segment change allows.
                self.audio_config = Some(packet.data);
            }
        }
        finished
    }

    /// Switches to keyframe cutting. An audio-only segment open at that moment is finished as
    /// is: it decodes fine, and the next segment must start at a keyframe.
    fn start_video(&mut self) -> Option<Segment> {
        if self.has_video {
            return None;
        }
        self.has_video = true;
        let open = self.open.take()?;
        let end = self.audio_clock.last_out.unwrap_or(open.start_ms)
            + self.audio_clock.last_delta.unwrap_or(0);
        Some(self.close(open, end))
    }

    fn push_frame(&mut self, mut packet: Packet) -> Result<Option<Segment>, SegmentError> {
        let mut finished = None;
        if packet.track == Track::Video {
            finished = self.start_video();
        }
        let jumped = self.retime(&mut packet);
        if jumped {
            match &mut self.open {
                Some(open) => open.discontinuity = true,
                None => self.pending_discontinuity = true,
            }
        }

        let Some(open) = &mut self.open else {
            // Nothing is open: a video stream waits for its first keyframe (earlier frames
            // cannot be decoded, and audio before it would start the segment early).
            if !self.has_video || packet.is_video_keyframe() {
                self.open = Some(self.open_at(packet));
            }
            return Ok(finished);
        };

        let elapsed = packet.dts_ms - open.start_ms;
        let reached_target = elapsed + self.tolerance_ms >= self.target_ms;
        let cut = if self.has_video {
            packet.is_video_keyframe() && (reached_target || self.video_config_changed)
        } else {
            reached_target
        };
        if cut {
            let open = self.open.take().expect("checked above");
            let boundary = packet.dts_ms;
            finished = Some(self.close(open, boundary));
            self.video_config_changed = false;
            self.open = Some(self.open_at(packet));
            return Ok(finished);
        }

        if elapsed > self.max_duration_ms {
            return Err(SegmentError::GopTooLong {
                limit_ms: self.max_duration_ms,
                start_ms: open.start_ms,
            });
        }
        open.size_bytes += packet.data.len() as u64;
        if open.size_bytes > self.max_bytes {
            return Err(SegmentError::SegmentTooLarge {
                limit_bytes: self.max_bytes,
            });
        }
        open.packets.push(packet);
        Ok(finished)
    }

    /// Moves the packet onto its track's continuous timeline; true if the input jumped.
    fn retime(&mut self, packet: &mut Packet) -> bool {
        let max_gap = self.max_gap_ms;
        let clock = match packet.track {
            Track::Video => &mut self.video_clock,
            Track::Audio => &mut self.audio_clock,
        };
        let mut out = packet.dts_ms + clock.offset;
        let mut jumped = false;
        if let Some(last) = clock.last_out {
            let delta = out - last;
            if delta < 0 || delta > max_gap {
                // Continue one frame interval after the last packet; 1 ms if none is known
                // yet, which keeps timestamps strictly increasing.
                let bridged = last + clock.last_delta.unwrap_or(1);
                clock.offset += bridged - out;
                out = bridged;
                jumped = true;
            } else if delta > 0 {
                clock.last_delta = Some(delta);
            }
        }
        clock.last_out = Some(out);
        let shift = out - packet.dts_ms;
        packet.dts_ms = out;
        packet.pts_ms += shift;
        jumped
    }

    fn open_at(&mut self, packet: Packet) -> OpenSegment {
        let size_bytes = packet.data.len() as u64;
        OpenSegment {
            start_ms: packet.dts_ms,
            size_bytes,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            video_config: self.video_config.clone(),
            audio_config: self.audio_config.clone(),
            packets: vec![packet],
        }
    }

    fn close(&mut self, open: OpenSegment, end_ms: i64) -> Segment {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        Segment {
            sequence,
            start_ms: open.start_ms,
            duration_ms: (end_ms - open.start_ms).max(0),
            size_bytes: open.size_bytes,
            discontinuity: open.discontinuity,
            video_config: open.video_config,
            audio_config: open.audio_config,
            packets: open.packets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO_CONFIG: &[u8] = &[1, 100, 0, 30];
    const AUDIO_CONFIG: &[u8] = &[0x12, 0x10];

    fn config(track: Track, data: &'static [u8]) -> Packet {
        Packet {
            track,
            kind: PacketKind::Config,
            dts_ms: 0,
            pts_ms: 0,
            keyframe: false,
            data: Bytes::from_static(data),
        }
    }

    fn video(dts_ms: i64, keyframe: bool) -> Packet {
        let data = Bytes::from(vec![0u8; if keyframe { 1000 } else { 100 }]);
        Packet {
            track: Track::Video,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms: dts_ms + 33,
            keyframe,
            data,
        }
    }

    fn audio(dts_ms: i64) -> Packet {
        Packet {
            track: Track::Audio,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms: dts_ms,
            keyframe: false,
            data: Bytes::from(vec![0u8; 10]),
        }
    }

    /// A 30 fps stream with a keyframe every `gop_frames` and AAC at 44.1 kHz (1024 samples a
    /// frame), interleaved by timestamp the way an FLV muxer writes it.
    fn av_stream(seconds: i64, gop_frames: i64) -> Vec<Packet> {
        let mut out = vec![
            config(Track::Video, VIDEO_CONFIG),
            config(Track::Audio, AUDIO_CONFIG),
        ];
        let frames = seconds * 30;
        let audio_frames = seconds * 44100 / 1024;
        let mut v = 0;
        let mut a = 0;
        while v < frames || a < audio_frames {
            let vt = v * 1000 / 30;
            let at = a * 1024 * 1000 / 44100;
            if v < frames && (a >= audio_frames || vt <= at) {
                out.push(video(vt, v % gop_frames == 0));
                v += 1;
            } else {
                out.push(audio(at));
                a += 1;
            }
        }
        out
    }

    fn run(config: SegmenterConfig, packets: Vec<Packet>) -> Vec<Segment> {
        let mut s = Segmenter::new(config);
        let mut segments: Vec<Segment> = packets
            .into_iter()
            .filter_map(|p| s.push(p).unwrap())
            .collect();
        segments.extend(s.finish());
        segments
    }

    fn durations(segments: &[Segment]) -> Vec<i64> {
        segments.iter().map(|s| s.duration_ms).collect()
    }

    /// Exact durations, except the last segment's: it ends one estimated frame interval after
    /// its last frame, and millisecond timestamps of 30 fps make that interval 33 or 34 ms.
    fn assert_durations(segments: &[Segment], expected: &[i64]) {
        let got = durations(segments);
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        let n = got.len() - 1;
        assert_eq!(got[..n], expected[..n], "{got:?} vs {expected:?}");
        assert!((got[n] - expected[n]).abs() <= 2, "{got:?} vs {expected:?}");
    }

    fn assert_well_formed(segments: &[Segment], total_ms: i64) {
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.sequence, i as u64);
            assert!(
                s.packets[0].is_video_keyframe(),
                "segment {i} starts with a keyframe"
            );
            assert_eq!(
                s.size_bytes,
                s.packets.iter().map(|p| p.data.len() as u64).sum::<u64>()
            );
            assert_eq!(s.video_config.as_deref(), Some(VIDEO_CONFIG));
            assert_eq!(s.audio_config.as_deref(), Some(AUDIO_CONFIG));
            if let Some(next) = segments.get(i + 1) {
                assert_eq!(
                    s.start_ms + s.duration_ms,
                    next.start_ms,
                    "segments are contiguous"
                );
            }
        }
        let sum: i64 = durations(segments).iter().sum();
        assert!(
            (sum - total_ms).abs() <= 40,
            "durations sum to {sum}, expected {total_ms}"
        );
    }

    #[test]
    fn one_second_gops_make_two_second_segments() {
        let segments = run(SegmenterConfig::default(), av_stream(10, 30));
        assert_durations(&segments, &[2000, 2000, 2000, 2000, 2000]);
        assert_well_formed(&segments, 10_000);
        // Five GOPs, so five keyframes, one per segment start and one inside each.
        let keyframes = segments[0]
            .packets
            .iter()
            .filter(|p| p.is_video_keyframe())
            .count();
        assert_eq!(keyframes, 2);
    }

    #[test]
    fn two_second_gops_make_two_second_segments() {
        let segments = run(SegmenterConfig::default(), av_stream(10, 60));
        assert_durations(&segments, &[2000; 5]);
        assert_well_formed(&segments, 10_000);
    }

    #[test]
    fn three_second_gops_make_three_second_segments() {
        let segments = run(SegmenterConfig::default(), av_stream(9, 90));
        assert_durations(&segments, &[3000; 3]);
        assert_well_formed(&segments, 9_000);
        for s in &segments {
            assert_eq!(
                s.packets.iter().filter(|p| p.is_video_keyframe()).count(),
                1,
                "never cut inside a GOP"
            );
        }
    }

    #[test]
    fn half_second_gops_make_two_second_segments() {
        let segments = run(SegmenterConfig::default(), av_stream(7, 15));
        // 7 s: three full segments and a 1 s tail.
        assert_durations(&segments, &[2000, 2000, 2000, 1000]);
        assert_well_formed(&segments, 7_000);
    }

    #[test]
    fn irregular_gops_cut_at_the_first_keyframe_past_the_target() {
        let keyframes = [0, 1500, 3000, 3500, 6000];
        let mut packets = vec![
            config(Track::Video, VIDEO_CONFIG),
            config(Track::Audio, AUDIO_CONFIG),
        ];
        for t in (0..7000).step_by(100) {
            packets.push(video(t, keyframes.contains(&t)));
            packets.push(audio(t));
        }
        let segments = run(SegmenterConfig::default(), packets);
        assert_durations(&segments, &[3000, 3000, 1000]);
        assert_well_formed(&segments, 7000);
    }

    #[test]
    fn early_keyframes_within_the_tolerance_still_cut() {
        let mut packets = vec![
            config(Track::Video, VIDEO_CONFIG),
            config(Track::Audio, AUDIO_CONFIG),
        ];
        for t in (0..4000).step_by(1) {
            // Keyframes 1 ms early, as millisecond rounding produces.
            if t % 1000 == 999 || t == 0 {
                packets.push(video(t, true));
            }
        }
        let segments = run(SegmenterConfig::default(), packets);
        assert_durations(&segments, &[1999, 2000, 1000]);
    }

    #[test]
    fn audio_only_streams_cut_on_time() {
        let mut packets = vec![config(Track::Audio, AUDIO_CONFIG)];
        let frames = 10 * 44100 / 1024;
        packets.extend((0..frames).map(|a| audio(a * 1024 * 1000 / 44100)));
        let last_dts = (frames - 1) * 1024 * 1000 / 44100;
        let segments = run(SegmenterConfig::default(), packets);
        assert_eq!(segments.len(), 5);
        for s in &segments[..4] {
            // Each cut is the first AAC frame (23.2 ms) at or past 2 s.
            assert!((1980..2024).contains(&s.duration_ms), "{}", s.duration_ms);
            assert_eq!(s.video_config, None);
            assert_eq!(s.audio_config.as_deref(), Some(AUDIO_CONFIG));
            assert!(s.packets.iter().all(|p| p.track == Track::Audio));
        }
        let sum: i64 = durations(&segments).iter().sum();
        assert_eq!(sum, last_dts + 23, "ends one frame after the last frame");
    }

    #[test]
    fn video_only_streams_work() {
        let packets: Vec<Packet> = av_stream(6, 30)
            .into_iter()
            .filter(|p| p.track == Track::Video)
            .collect();
        let segments = run(SegmenterConfig::default(), packets);
        assert_durations(&segments, &[2000, 2000, 2000]);
        assert!(
            segments
                .iter()
                .all(|s| s.audio_config.is_none() && s.packets[0].is_video_keyframe())
        );
    }

    #[test]
    fn frames_before_the_first_keyframe_are_dropped() {
        let mut packets = vec![
            config(Track::Video, VIDEO_CONFIG),
            config(Track::Audio, AUDIO_CONFIG),
        ];
        packets.push(video(0, false));
        packets.push(audio(10));
        packets.push(video(33, false));
        packets.extend(av_stream(4, 30).into_iter().skip(2).map(|mut p| {
            p.dts_ms += 66;
            p.pts_ms += 66;
            p
        }));
        let segments = run(SegmenterConfig::default(), packets);
        assert_eq!(segments[0].start_ms, 66);
        assert!(segments[0].packets[0].is_video_keyframe());
        assert_durations(&segments, &[2000, 2000]);
    }

    #[test]
    fn backward_timestamp_jump_is_bridged_without_cutting_the_gop() {
        // 1 s GOPs; at 2.5 s (mid-GOP) the encoder's clock resets to 0.
        let mut packets = vec![config(Track::Video, VIDEO_CONFIG)];
        for i in 0..75 {
            packets.push(video(i * 1000 / 30, i % 30 == 0));
        }
        for i in 0..105 {
            // The GOP continues: the next keyframe comes 0.5 s after the jump.
            packets.push(video(i * 1000 / 30, (i + 15) % 30 == 0));
        }
        let segments = run(SegmenterConfig::default(), packets);
        let total = 180 * 1000 / 30; // every frame plays, whatever its input timestamp
        let sum: i64 = durations(&segments).iter().sum();
        assert!((sum - total).abs() <= 2, "sum {sum} vs {total}");
        assert_eq!(
            segments.iter().map(|s| s.discontinuity).collect::<Vec<_>>(),
            vec![false, true, false]
        );
        for s in &segments {
            assert!(s.packets[0].is_video_keyframe());
            assert!(
                s.packets.windows(2).all(|w| w[0].dts_ms < w[1].dts_ms),
                "retimed timeline is monotonic"
            );
            // pts keeps its composition offset through retiming.
            assert!(s.packets.iter().all(|p| p.pts_ms - p.dts_ms == 33));
        }
    }

    #[test]
    fn forward_gap_beyond_the_limit_is_a_discontinuity() {
        let mut packets = vec![config(Track::Audio, AUDIO_CONFIG)];
        packets.extend((0..50).map(|i| audio(i * 20)));
        packets.extend((0..100).map(|i| audio(60_000 + i * 20)));
        let segments = run(SegmenterConfig::default(), packets);
        let sum: i64 = durations(&segments).iter().sum();
        assert_eq!(sum, 150 * 20);
        assert!(segments.iter().any(|s| s.discontinuity));
    }

    #[test]
    fn a_new_video_config_cuts_at_the_next_keyframe() {
        let mut packets = av_stream(2, 15);
        let at = packets
            .iter()
            .position(|p| p.track == Track::Video && p.dts_ms >= 300)
            .unwrap();
        packets.insert(at, config(Track::Video, &[1, 77, 0, 31]));
        let segments = run(SegmenterConfig::default(), packets);
        assert_durations(&segments, &[500, 1500]);
        assert_eq!(segments[0].video_config.as_deref(), Some(VIDEO_CONFIG));
        assert_eq!(
            segments[1].video_config.as_deref(),
            Some(&[1, 77, 0, 31][..])
        );
    }

    #[test]
    fn audio_before_video_is_flushed_when_video_appears() {
        let mut packets = vec![config(Track::Audio, AUDIO_CONFIG), audio(0), audio(23)];
        packets.push(config(Track::Video, VIDEO_CONFIG));
        packets.extend(av_stream(2, 30).into_iter().skip(2).map(|mut p| {
            p.dts_ms += 46;
            p.pts_ms += 46;
            p
        }));
        let segments = run(SegmenterConfig::default(), packets);
        assert_eq!(segments[0].packets.len(), 2);
        assert_eq!(segments[0].duration_ms, 46);
        assert!(segments[1].packets[0].is_video_keyframe());
    }

    #[test]
    fn a_gop_longer_than_the_limit_is_an_error() {
        let config = SegmenterConfig {
            max_duration: Duration::from_secs(5),
            ..Default::default()
        };
        let mut s = Segmenter::new(config);
        s.push(video(0, true)).unwrap();
        let err = (1..200)
            .find_map(|i| s.push(video(i * 33, false)).err())
            .unwrap();
        assert_eq!(
            err,
            SegmentError::GopTooLong {
                limit_ms: 5000,
                start_ms: 0
            }
        );
    }

    #[test]
    fn a_segment_larger_than_the_limit_is_an_error() {
        let config = SegmenterConfig {
            max_bytes: 5000,
            ..Default::default()
        };
        let mut s = Segmenter::new(config);
        s.push(video(0, true)).unwrap();
        let err = (1..100)
            .find_map(|i| s.push(video(i * 33, false)).err())
            .unwrap();
        assert_eq!(err, SegmentError::SegmentTooLarge { limit_bytes: 5000 });
    }

    #[test]
    fn nothing_in_nothing_out() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        assert_eq!(s.push(config(Track::Video, VIDEO_CONFIG)).unwrap(), None);
        assert_eq!(s.finish(), None);
    }
}
