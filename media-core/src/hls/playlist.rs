//! HLS playlists (RFC 8216): a sliding-window media playlist and the master playlist that
//! lists renditions.

use std::collections::VecDeque;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    uri: String,
    duration_s: f64,
    discontinuity: bool,
    /// The wall-clock time of the segment's first frame (unix ms): `EXT-X-PROGRAM-DATE-TIME`.
    program_date_ms: Option<i64>,
}

/// A media playlist of one rendition. While live it keeps the newest `window` segments; after
/// [`MediaPlaylist::end`] it renders `EXT-X-ENDLIST` so players stop reloading.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    window: usize,
    entries: VecDeque<Entry>,
    /// Sequence number of the first entry in the window.
    media_sequence: u64,
    /// Discontinuities that slid out of the window.
    discontinuity_sequence: u64,
    /// Longest duration ever pushed, in milliseconds as rendered. RFC 8216 forbids
    /// `EXT-X-TARGETDURATION` from changing, so it is not recomputed from the window.
    longest_ms: u64,
    ended: bool,
    /// A complete, unchanging playlist (`EXT-X-PLAYLIST-TYPE:VOD`).
    vod: bool,
}

impl MediaPlaylist {
    /// An empty playlist keeping the newest `window` segments; 0 keeps every segment (a
    /// recording or VOD playlist).
    pub fn new(window: usize) -> Self {
        Self {
            window,
            entries: VecDeque::new(),
            media_sequence: 0,
            discontinuity_sequence: 0,
            longest_ms: 0,
            ended: false,
            vod: false,
        }
    }

    /// An empty video-on-demand playlist: it keeps every segment and always renders
    /// `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`, so players know its whole length up front
    /// and can seek (recordings, uploads).
    pub fn vod() -> Self {
        Self {
            vod: true,
            ended: true,
            ..Self::new(0)
        }
    }

    /// Continues a live playlist that [`MediaPlaylist::render`] wrote earlier, as when a
    /// publisher reconnects: the same segments, media and discontinuity sequence numbers and
    /// target duration, open again (no `EXT-X-ENDLIST`). The caller marks the next segment as a
    /// discontinuity. `None` for text that is not such a playlist, or a VOD playlist.
    pub fn resume(text: &str, window: usize) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim_end() != "#EXTM3U" {
            return None;
        }
        let mut playlist = Self::new(window);
        let mut duration: Option<f64> = None;
        let mut discontinuity = false;
        let mut program_date: Option<i64> = None;
        for line in lines.map(str::trim_end).filter(|l| !l.is_empty()) {
            if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                playlist.longest_ms = playlist
                    .longest_ms
                    .max(value.parse::<u64>().ok()?.saturating_mul(1000));
            } else if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = value.parse().ok()?;
            } else if let Some(value) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                playlist.discontinuity_sequence = value.parse().ok()?;
            } else if line == "#EXT-X-DISCONTINUITY" {
                discontinuity = true;
            } else if let Some(value) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                program_date = parse_program_date(value);
            } else if let Some(value) = line.strip_prefix("#EXTINF:") {
                duration = Some(value.split(',').next()?.parse().ok()?);
            } else if line.starts_with("#EXT-X-PLAYLIST-TYPE") {
                return None;
            } else if !line.starts_with('#') {
                let duration_s = duration.take()?;
                playlist.longest_ms = playlist.longest_ms.max(millis(duration_s));
                playlist.entries.push_back(Entry {
                    uri: line.to_string(),
                    duration_s,
                    discontinuity,
                    program_date_ms: program_date.take(),
                });
                discontinuity = false;
            }
        }
        // A smaller window than before drops the oldest entries, counting them as usual.
        while playlist.window > 0 && playlist.entries.len() > playlist.window {
            let dropped = playlist
                .entries
                .pop_front()
                .expect("longer than the window");
            playlist.media_sequence += 1;
            if dropped.discontinuity {
                playlist.discontinuity_sequence += 1;
            }
        }
        Some(playlist)
    }

    /// Appends a segment, dropping the oldest one if the window is full. `discontinuity`
    /// marks a segment whose timestamps or encoding do not continue the previous one's.
    pub fn push(&mut self, uri: String, duration_s: f64, discontinuity: bool) {
        self.push_at(uri, duration_s, discontinuity, None);
    }

    /// [`MediaPlaylist::push`] with the wall-clock time of the segment's first frame (unix ms),
    /// rendered as `EXT-X-PROGRAM-DATE-TIME` so players can tell the time of any moment.
    pub fn push_at(
        &mut self,
        uri: String,
        duration_s: f64,
        discontinuity: bool,
        program_date_ms: Option<i64>,
    ) {
        // A negative or NaN duration would render an invalid tag; it can only be a bug
        // upstream, and 0 keeps the playlist parseable.
        let duration_s = if duration_s.is_finite() && duration_s > 0.0 {
            duration_s
        } else {
            0.0
        };
        self.longest_ms = self.longest_ms.max(millis(duration_s));
        self.entries.push_back(Entry {
            uri,
            duration_s,
            discontinuity,
            program_date_ms,
        });
        while self.window > 0 && self.entries.len() > self.window {
            let dropped = self.entries.pop_front().expect("longer than the window");
            self.media_sequence += 1;
            if dropped.discontinuity {
                self.discontinuity_sequence += 1;
            }
        }
    }

    /// Marks the stream as finished: the playlist will not change again.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// True once [`MediaPlaylist::end`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Segments in the window.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no segment is in the window.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `#EXTM3U` text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128 + self.entries.len() * 64);
        // Ceil of the longest duration as rendered, so that a segment shown as 2.000 never
        // asks for 3; at least 1, since 0 makes some players reload in a busy loop.
        let target = self.longest_ms.div_ceil(1000).max(1);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        if self.vod {
            out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
        }
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        for entry in &self.entries {
            if entry.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(ms) = entry.program_date_ms {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", program_date(ms));
            }
            let _ = writeln!(out, "#EXTINF:{:.3},", entry.duration_s);
            out.push_str(&entry.uri);
            out.push('\n');
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// Unix milliseconds as ISO 8601 in UTC with milliseconds (`2026-12-02T12:00:00.250Z`).
pub fn program_date(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// The unix milliseconds of a [`program_date`] (only the form it writes); `None` otherwise.
pub fn parse_program_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 1970-01-01 from a civil date (the inverse of `program_date`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli)
}

fn millis(seconds: f64) -> u64 {
    (seconds * 1000.0).round() as u64
}

/// One rendition in a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// URI of the rendition's media playlist, relative to the master playlist.
    pub uri: String,
    /// Peak bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// Average bits per second (`AVERAGE-BANDWIDTH`), if known.
    pub average_bandwidth: Option<u64>,
    /// Width and height in pixels; `None` for audio-only.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codec strings, e.g. `avc1.64001f` and `mp4a.40.2` (see
    /// [`crate::hls::avc_codec_string`] and [`crate::hls::aac_codec_string`]).
    pub codecs: Vec<String>,
    /// Frames per second; `None` for audio-only.
    pub frame_rate: Option<f64>,
}

/// Renders a master playlist listing `variants` in order.
pub fn master_playlist(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
        if let Some(average) = v.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={average}");
        }
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if !v.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", v.codecs.join(","));
        }
        if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        out.push('\n');
        out.push_str(&v.uri);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_dates_are_iso_8601_utc_and_read_back() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_796_214_290_836, "2026-12-02T12:24:50.836Z"),
            (951_782_400_001, "2000-02-29T00:00:00.001Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ] {
            assert_eq!(program_date(ms), text);
            assert_eq!(parse_program_date(text), Some(ms));
        }
        assert_eq!(parse_program_date("2026-13-01T00:00:00.000Z"), None);
        assert_eq!(parse_program_date("yesterday"), None);
    }

    #[test]
    fn segments_carry_their_program_date_through_a_resume() {
        let mut p = MediaPlaylist::new(3);
        p.push_at("a.ts".into(), 2.0, false, Some(1_796_214_290_000));
        p.push_at("b.ts".into(), 2.0, false, Some(1_796_214_292_000));
        let text = p.render();
        assert!(
            text.contains(
                "#EXT-X-PROGRAM-DATE-TIME:2026-12-02T12:24:50.000Z\n#EXTINF:2.000,\na.ts\n"
            ),
            "{text}"
        );
        let resumed = MediaPlaylist::resume(&text, 3).unwrap();
        assert_eq!(resumed.render(), text);
    }

    fn pushed(window: usize, segments: &[(f64, bool)]) -> MediaPlaylist {
        let mut p = MediaPlaylist::new(window);
        for (i, &(d, disc)) in segments.iter().enumerate() {
            p.push(format!("{i}.ts"), d, disc);
        }
        p
    }

    #[test]
    fn renders_a_live_playlist() {
        let p = pushed(5, &[(2.0, false), (2.0021, false), (1.5, false)]);
        assert_eq!(
            p.render(),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXTINF:2.000,\n0.ts\n#EXTINF:2.002,\n1.ts\n#EXTINF:1.500,\n2.ts\n"
        );
    }

    #[test]
    fn window_slides_and_counts_the_media_sequence() {
        let p = pushed(3, &[(2.0, false); 5]);
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert_eq!(p.len(), 3);
        assert!(!text.contains("\n1.ts") && text.contains("\n2.ts\n") && text.ends_with("4.ts\n"));
        assert!(!text.contains("DISCONTINUITY"));
    }

    #[test]
    fn window_zero_keeps_everything() {
        let p = pushed(0, &[(2.0, false); 50]);
        assert_eq!(p.len(), 50);
        assert!(p.render().contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }

    #[test]
    fn target_duration_is_the_ceiling_of_the_longest_ever() {
        assert!(
            pushed(3, &[(2.0, false); 3])
                .render()
                .contains("TARGETDURATION:2\n")
        );
        // 2.0004 renders as 2.000, so it must not ask for 3.
        assert!(
            pushed(3, &[(2.0004, false)])
                .render()
                .contains("TARGETDURATION:2\n")
        );
        // A long segment that slid out still counts: the tag must never change.
        let p = pushed(2, &[(6.2, false), (2.0, false), (2.0, false)]);
        assert!(p.render().contains("TARGETDURATION:7\n"));
        assert!(
            pushed(3, &[(0.2, false)])
                .render()
                .contains("TARGETDURATION:1\n")
        );
    }

    #[test]
    fn discontinuity_is_marked_then_counted_when_it_slides_out() {
        let p = pushed(3, &[(2.0, false), (2.0, true), (2.0, false)]);
        let text = p.render();
        assert!(
            text.contains("#EXTINF:2.000,\n0.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n1.ts\n")
        );
        assert!(!text.contains("DISCONTINUITY-SEQUENCE"));

        let p = pushed(
            3,
            &[
                (2.0, false),
                (2.0, true),
                (2.0, false),
                (2.0, false),
                (2.0, false),
            ],
        );
        let text = p.render();
        assert!(
            text.contains("#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
            "{text}"
        );
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    }

    #[test]
    fn vod_playlist_is_typed_and_closed() {
        let mut playlist = MediaPlaylist::vod();
        for i in 0..10 {
            playlist.push(format!("{i}.ts"), 2.0, false);
        }
        let text = playlist.render();
        assert!(
            text.contains(
                "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("#EXTINF:2.000,").count(), 10);
        assert!(text.ends_with("9.ts\n#EXT-X-ENDLIST\n"), "{text}");
    }

    #[test]
    fn resume_continues_the_rendered_playlist() {
        let mut first = MediaPlaylist::new(3);
        for i in 0..5 {
            first.push(format!("a_{i}.ts"), if i == 2 { 2.5 } else { 2.0 }, i == 3);
        }
        first.end();
        let mut resumed = MediaPlaylist::resume(&first.render(), 3).unwrap();
        assert!(!resumed.is_ended());
        assert_eq!(
            resumed.render(),
            first.render().replace("#EXT-X-ENDLIST\n", "")
        );
        resumed.push("b_0.ts".into(), 2.0, true);
        resumed.push("b_1.ts".into(), 2.0, false);
        let text = resumed.render();
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(
            text.ends_with(
                "#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nb_0.ts\n#EXTINF:2.000,\nb_1.ts\n"
            ),
            "{text}"
        );
        assert!(MediaPlaylist::resume("not a playlist", 3).is_none());
        assert!(MediaPlaylist::resume(&MediaPlaylist::vod().render(), 3).is_none());
    }

    #[test]
    fn endlist_after_end() {
        let mut p = pushed(3, &[(2.0, false)]);
        assert!(!p.render().contains("ENDLIST"));
        p.end();
        assert!(p.is_ended());
        assert!(p.render().ends_with("0.ts\n#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn invalid_durations_render_as_zero() {
        let p = pushed(3, &[(f64::NAN, false), (-1.0, false)]);
        assert_eq!(p.render().matches("#EXTINF:0.000,").count(), 2);
    }

    #[test]
    fn master_playlist_lists_variants() {
        let text = master_playlist(&[
            Variant {
                uri: "source/index.m3u8".into(),
                bandwidth: 2_500_000,
                average_bandwidth: Some(2_000_000),
                resolution: Some((640, 360)),
                codecs: vec!["avc1.64001e".into(), "mp4a.40.2".into()],
                frame_rate: Some(30.0),
            },
            Variant {
                uri: "audio/index.m3u8".into(),
                bandwidth: 70_000,
                average_bandwidth: None,
                resolution: None,
                codecs: vec!["mp4a.40.2".into()],
                frame_rate: None,
            },
        ]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,RESOLUTION=640x360,\
             CODECS=\"avc1.64001e,mp4a.40.2\",FRAME-RATE=30.000\nsource/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=70000,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        );
    }
}
