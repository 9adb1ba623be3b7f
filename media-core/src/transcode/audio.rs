//! Audio between the worlds of WebRTC (Opus) and of HLS and RTMP (AAC), on FFmpeg's libraries:
//! decode, resample to the encoder's format (48 kHz stereo), cut into the encoder's frame size,
//! encode. One transcoder per track, fed frame by frame, answering with whatever whole frames
//! it could encode; memory stays at a frame or two.

use bytes::Bytes;
use ffmpeg::codec;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg::util::frame::audio::Audio as AudioFrame;
use ffmpeg::{ChannelLayout, Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use crate::flv::AacConfig;
use crate::hls::ts::AdtsParams;

/// The rate both directions encode at (Opus only knows 48 kHz; AAC takes it too).
const RATE: u32 = 48_000;
/// The AAC bitrate of audio that came from WebRTC.
const AAC_BITRATE: usize = 128_000;
/// The Opus bitrate of audio sent over WebRTC.
const OPUS_BITRATE: usize = 96_000;
/// The AudioSpecificConfig of what [`AudioTranscoder::opus_to_aac`] encodes: AAC-LC (object
/// type 2), 48 kHz (frequency index 3), two channels.
const AAC_LC_48K_STEREO: [u8; 2] = [0x11, 0x90];
/// Samples per channel buffered before the oldest are dropped (a decoder producing far more
/// than the encoder takes would otherwise grow without bound).
const MAX_PENDING_SAMPLES: usize = RATE as usize;

/// Why audio could not be transcoded.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {source}")]
pub struct AudioError {
    stage: &'static str,
    source: ffmpeg::Error,
}

fn fail(stage: &'static str) -> impl FnOnce(ffmpeg::Error) -> AudioError {
    move |source| AudioError { stage, source }
}

/// Decodes one codec and encodes another, frame by frame.
pub struct AudioTranscoder {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    resampler: Option<resampling::Context>,
    /// Samples per channel of each encoder frame.
    frame_size: usize,
    /// Resampled bytes not encoded yet, one buffer per plane of the encoder's format.
    pending: Vec<Vec<u8>>,
    /// Bytes per sample in one plane (all channels for packed formats).
    plane_stride: usize,
    /// Media time (ms) of the first pending sample.
    pending_ms: Option<i64>,
    /// The encoder's decoder configuration (AudioSpecificConfig for AAC).
    config: Bytes,
    /// AAC input is fed in ADTS, which carries its configuration in every frame.
    adts: Option<AdtsParams>,
}

impl AudioTranscoder {
    /// Opus (as WebRTC carries it) to AAC-LC.
    pub fn opus_to_aac() -> Result<Self, AudioError> {
        let decoder = open_decoder(codec::Id::OPUS)?;
        let encoder = open_encoder(
            codec::encoder::find(codec::Id::AAC),
            Sample::F32(SampleType::Planar),
            AAC_BITRATE,
        )?;
        Self::new(
            decoder,
            encoder,
            Bytes::from_static(&AAC_LC_48K_STEREO),
            None,
        )
    }

    /// AAC with the AudioSpecificConfig `config` to Opus.
    pub fn aac_to_opus(config: &[u8]) -> Result<Self, AudioError> {
        let adts = AacConfig::parse(config)
            .ok()
            .and_then(|c| AdtsParams::new(&c).ok())
            .ok_or(AudioError {
                stage: "reading the AAC configuration",
                source: ffmpeg::Error::InvalidData,
            })?;
        let decoder = open_decoder(codec::Id::AAC)?;
        let encoder = open_encoder(
            codec::encoder::find_by_name("libopus"),
            Sample::F32(SampleType::Packed),
            OPUS_BITRATE,
        )?;
        Self::new(decoder, encoder, Bytes::new(), Some(adts))
    }

    fn new(
        decoder: ffmpeg::decoder::Audio,
        encoder: ffmpeg::encoder::Audio,
        config: Bytes,
        adts: Option<AdtsParams>,
    ) -> Result<Self, AudioError> {
        let format = encoder.format();
        let channels = usize::from(encoder.channels().max(1));
        let (planes, plane_stride) = if format.is_planar() {
            (channels, format.bytes())
        } else {
            (1, format.bytes() * channels)
        };
        let frame_size = match encoder.frame_size() {
            0 => 960,
            size => size as usize,
        };
        Ok(Self {
            decoder,
            encoder,
            resampler: None,
            frame_size,
            pending: vec![Vec::new(); planes],
            plane_stride,
            pending_ms: None,
            config,
            adts,
        })
    }

    /// The encoder's decoder configuration (AAC's AudioSpecificConfig; empty for Opus).
    pub fn config(&self) -> Bytes {
        self.config.clone()
    }

    /// Decodes one frame stamped `ms` and returns the encoded frames that became whole, each
    /// with its media time in ms.
    pub fn push(&mut self, data: &[u8], ms: i64) -> Result<Vec<(i64, Bytes)>, AudioError> {
        let mut packet = match &self.adts {
            Some(adts) => match adts.wrap(data) {
                Ok(framed) => ffmpeg::Packet::copy(&framed),
                Err(_) => return Ok(Vec::new()),
            },
            None => ffmpeg::Packet::copy(data),
        };
        packet.set_pts(Some(ms));
        // A frame the decoder refuses (corrupt, lost in part) is skipped, not fatal.
        if self.decoder.send_packet(&packet).is_err() {
            return Ok(Vec::new());
        }
        let mut decoded = AudioFrame::empty();
        let mut out = Vec::new();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            self.resample(&decoded, ms)?;
            self.encode_whole_frames(&mut out)?;
        }
        Ok(out)
    }

    fn resample(&mut self, decoded: &AudioFrame, ms: i64) -> Result<(), AudioError> {
        if decoded.samples() == 0 {
            return Ok(());
        }
        let layout = match decoded.channel_layout() {
            layout if layout.is_empty() => ChannelLayout::default(decoded.channels().into()),
            layout => layout,
        };
        if self.resampler.is_none() {
            self.resampler = Some(
                resampling::Context::get(
                    decoded.format(),
                    layout,
                    decoded.rate(),
                    self.encoder.format(),
                    self.encoder.channel_layout(),
                    RATE,
                )
                .map_err(fail("creating the resampler"))?,
            );
        }
        let resampler = self.resampler.as_mut().expect("created above");
        let capacity = decoded.samples() * RATE as usize / decoded.rate().max(1) as usize + 256;
        let mut output = AudioFrame::new(
            self.encoder.format(),
            capacity,
            self.encoder.channel_layout(),
        );
        resampler
            .run(decoded, &mut output)
            .map_err(fail("resampling"))?;
        let samples = output.samples();
        if self.pending_ms.is_none() {
            self.pending_ms = Some(ms);
        }
        for (plane, pending) in self.pending.iter_mut().enumerate() {
            let bytes = samples * self.plane_stride;
            pending.extend_from_slice(&output.data(plane)[..bytes]);
        }
        let excess = self.pending_samples().saturating_sub(MAX_PENDING_SAMPLES);
        if excess > 0 {
            self.consume(excess);
        }
        Ok(())
    }

    fn pending_samples(&self) -> usize {
        self.pending[0].len() / self.plane_stride
    }

    /// Drops the `samples` oldest pending samples.
    fn consume(&mut self, samples: usize) {
        for pending in &mut self.pending {
            pending.drain(..samples * self.plane_stride);
        }
        if let Some(ms) = &mut self.pending_ms {
            *ms += (samples as i64 * 1000) / i64::from(RATE);
        }
    }

    fn encode_whole_frames(&mut self, out: &mut Vec<(i64, Bytes)>) -> Result<(), AudioError> {
        while self.pending_samples() >= self.frame_size {
            let ms = self.pending_ms.unwrap_or(0);
            let mut frame = AudioFrame::new(
                self.encoder.format(),
                self.frame_size,
                self.encoder.channel_layout(),
            );
            frame.set_rate(RATE);
            frame.set_pts(Some(ms * i64::from(RATE) / 1000));
            for (plane, pending) in self.pending.iter().enumerate() {
                let bytes = self.frame_size * self.plane_stride;
                frame.data_mut(plane)[..bytes].copy_from_slice(&pending[..bytes]);
            }
            self.consume(self.frame_size);
            self.encoder.send_frame(&frame).map_err(fail("encoding"))?;
            let mut packet = ffmpeg::Packet::empty();
            while self.encoder.receive_packet(&mut packet).is_ok() {
                let pts = packet.pts().unwrap_or(0);
                let ms = pts * 1000 / i64::from(RATE);
                out.push((ms, Bytes::copy_from_slice(packet.data().unwrap_or(&[]))));
            }
        }
        Ok(())
    }
}

fn open_decoder(id: codec::Id) -> Result<ffmpeg::decoder::Audio, AudioError> {
    crate::transcode::local::init_ffmpeg().map_err(|_| AudioError {
        stage: "initializing FFmpeg",
        source: ffmpeg::Error::Bug,
    })?;
    let codec = codec::decoder::find(id).ok_or(AudioError {
        stage: "finding the decoder",
        source: ffmpeg::Error::DecoderNotFound,
    })?;
    // Neither needs extradata: FFmpeg's Opus decoder takes WebRTC's Opus (no extradata) as
    // stereo at 48 kHz, and AAC comes in ADTS.
    codec::context::Context::new_with_codec(codec)
        .decoder()
        .audio()
        .map_err(fail("opening the decoder"))
}

fn open_encoder(
    codec: Option<ffmpeg::Codec>,
    format: Sample,
    bitrate: usize,
) -> Result<ffmpeg::encoder::Audio, AudioError> {
    let codec = codec.ok_or(AudioError {
        stage: "finding the encoder",
        source: ffmpeg::Error::EncoderNotFound,
    })?;
    let mut encoder = codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(fail("creating the encoder"))?;
    encoder.set_rate(RATE as i32);
    encoder.set_format(format);
    encoder.set_channel_layout(ChannelLayout::STEREO);
    encoder.set_channels(2);
    encoder.set_bit_rate(bitrate);
    encoder.set_time_base(Rational::new(1, RATE as i32));
    encoder
        .open_as_with(codec, Dictionary::new())
        .map_err(fail("opening the encoder"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second of a 440 Hz tone, through Opus and back to AAC.
    #[test]
    fn a_tone_goes_from_aac_to_opus_and_back() {
        // The tone as AAC first, from the encoder the transcoder itself uses.
        crate::transcode::local::init_ffmpeg().unwrap();
        let mut to_aac_source = open_encoder(
            codec::encoder::find(codec::Id::AAC),
            Sample::F32(SampleType::Planar),
            AAC_BITRATE,
        )
        .unwrap();
        let config = AAC_LC_48K_STEREO;
        let mut aac = Vec::new();
        let size = to_aac_source.frame_size() as usize;
        for n in 0..(RATE as usize / size) {
            let mut frame =
                AudioFrame::new(Sample::F32(SampleType::Planar), size, ChannelLayout::STEREO);
            frame.set_rate(RATE);
            frame.set_pts(Some((n * size) as i64));
            for plane in 0..2 {
                let samples = frame.plane_mut::<f32>(plane);
                for (i, s) in samples.iter_mut().enumerate() {
                    let t = (n * size + i) as f32 / RATE as f32;
                    *s = (t * 440.0 * std::f32::consts::TAU).sin() * 0.5;
                }
            }
            to_aac_source.send_frame(&frame).unwrap();
            let mut packet = ffmpeg::Packet::empty();
            while to_aac_source.receive_packet(&mut packet).is_ok() {
                aac.push(packet.data().unwrap().to_vec());
            }
        }
        assert!(aac.len() > 40, "{} AAC frames", aac.len());

        let mut to_opus = AudioTranscoder::aac_to_opus(&config).unwrap();
        let mut opus = Vec::new();
        for (n, frame) in aac.iter().enumerate() {
            opus.extend(
                to_opus
                    .push(frame, (n * size * 1000 / RATE as usize) as i64)
                    .unwrap(),
            );
        }
        // 20 ms Opus frames, in order, for most of the second.
        assert!(opus.len() >= 40, "{} Opus frames", opus.len());
        assert!(opus.windows(2).all(|w| w[1].0 > w[0].0));

        let mut to_aac = AudioTranscoder::opus_to_aac().unwrap();
        assert_eq!(to_aac.config().len(), 2, "an AAC-LC AudioSpecificConfig");
        let mut back = Vec::new();
        for (ms, frame) in &opus {
            back.extend(to_aac.push(frame, *ms).unwrap());
        }
        assert!(back.len() >= 35, "{} AAC frames back", back.len());
        assert!(back.windows(2).all(|w| w[1].0 >= w[0].0));
    }
}
