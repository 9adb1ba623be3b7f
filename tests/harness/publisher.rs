//! An RTMP publisher that sends exactly what a test tells it to: real H.264 frames (encoded once
//! by ffmpeg) with the timestamps and sizes of the test's choosing, at any rate. It speaks RTMP
//! through rml_rtmp's client session, as an encoder library would; it is how tests play a
//! misbehaving or hostile encoder.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

/// FLV video tag bodies of a real H.264 stream: its decoder configuration and one keyframe.
pub struct H264Frames {
    /// The AVC sequence header (AVCDecoderConfigurationRecord).
    pub config: Bytes,
    /// One IDR picture.
    pub keyframe: Bytes,
}

impl H264Frames {
    /// 320x240 H.264 from ffmpeg, encoded once per test process.
    pub async fn get() -> &'static H264Frames {
        static FRAMES: OnceCell<H264Frames> = OnceCell::const_new();
        FRAMES.get_or_init(encode).await
    }

    /// The keyframe grown to `size` bytes with an H.264 filler NAL unit (decoders skip it).
    pub fn keyframe_of_size(&self, size: usize) -> Bytes {
        let filler = size.saturating_sub(self.keyframe.len() + 5).max(1);
        let mut tag = BytesMut::with_capacity(self.keyframe.len() + filler + 5);
        tag.extend_from_slice(&self.keyframe);
        tag.put_u32(filler as u32 + 1);
        tag.put_u8(12); // filler data
        tag.put_bytes(0xff, filler);
        tag.freeze()
    }
}

async fn encode() -> H264Frames {
    let dir = crate::TempDir::new();
    let file = dir.0.join("frames.flv");
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc=size=320x240:rate=30", "-t", "0.2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "1", "-an"])
        .args(["-f", "flv"])
        .arg(&file)
        .status()
        .await
        .expect("running ffmpeg (scripts/test-deps installs it)");
    assert!(status.success());
    let flv = std::fs::read(&file).unwrap();
    let (mut config, mut keyframe) = (None, None);
    for tag in flv_tags(&flv) {
        if tag.kind == FlvTagKind::Video && tag.body.len() > 2 {
            match tag.body[1] {
                0 => config = config.or(Some(tag.body)),
                1 if tag.body[0] >> 4 == 1 => keyframe = keyframe.or(Some(tag.body)),
                _ => {}
            }
        }
    }
    H264Frames {
        config: config.expect("an AVC sequence header"),
        keyframe: keyframe.expect("a keyframe"),
    }
}

/// What an FLV tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlvTagKind {
    Audio,
    Video,
    /// Script data (`onMetaData`) and anything else.
    Other,
}

/// One tag of an FLV file: its body is what an RTMP audio or video message carries.
#[derive(Debug, Clone)]
pub struct FlvTag {
    pub kind: FlvTagKind,
    pub timestamp_ms: u32,
    pub body: Bytes,
}

/// The tags of an FLV file, in order; a truncated last tag is left out.
pub fn flv_tags(flv: &[u8]) -> Vec<FlvTag> {
    // A 9-byte header and a 4-byte size, then tags of 11 header bytes, a body and a size.
    let mut tags = Vec::new();
    let mut pos = 13;
    while pos + 11 <= flv.len() {
        let kind = match flv[pos] {
            8 => FlvTagKind::Audio,
            9 => FlvTagKind::Video,
            _ => FlvTagKind::Other,
        };
        let size = u32::from_be_bytes([0, flv[pos + 1], flv[pos + 2], flv[pos + 3]]) as usize;
        let timestamp_ms =
            u32::from_be_bytes([flv[pos + 7], flv[pos + 4], flv[pos + 5], flv[pos + 6]]);
        let Some(body) = flv.get(pos + 11..pos + 11 + size) else {
            break;
        };
        tags.push(FlvTag {
            kind,
            timestamp_ms,
            body: Bytes::copy_from_slice(body),
        });
        pos += 11 + size + 4;
    }
    tags
}

/// A connection publishing to the server's RTMP ingest.
pub struct RtmpPublisher {
    socket: TcpStream,
    session: ClientSession,
}

impl RtmpPublisher {
    /// Connects to `rtmp_addr` and publishes `stream_key` to the `live` application; fails if
    /// the server refuses.
    pub async fn publish(rtmp_addr: SocketAddr, stream_key: &str) -> anyhow::Result<Self> {
        let mut socket = TcpStream::connect(rtmp_addr).await?;
        socket.set_nodelay(true)?;
        let mut handshake = Handshake::new(PeerType::Client);
        socket
            .write_all(&handshake.generate_outbound_p0_and_p1()?)
            .await?;
        let mut buf = vec![0u8; 64 * 1024];
        let leftover = loop {
            let n = socket.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "closed during the handshake");
            match handshake.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    socket.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new())?;
        let mut publisher = RtmpPublisher { socket, session };
        publisher.send_results(results).await?;
        if !leftover.is_empty() {
            publisher.handle(&leftover).await?;
        }
        let request = publisher.session.request_connection("live".into())?;
        publisher.send_results(vec![request]).await?;
        publisher
            .wait_for(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
            .await?;
        let request = publisher
            .session
            .request_publishing(stream_key.into(), PublishRequestType::Live)?;
        publisher.send_results(vec![request]).await?;
        publisher
            .wait_for(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))
            .await?;
        Ok(publisher)
    }

    /// Sends one FLV video tag body stamped `timestamp_ms`.
    pub async fn video(&mut self, tag: Bytes, timestamp_ms: u32) -> anyhow::Result<()> {
        let packet =
            self.session
                .publish_video_data(tag, RtmpTimestamp::new(timestamp_ms), false)?;
        self.send_results(vec![packet]).await
    }

    /// Sends one FLV audio tag body stamped `timestamp_ms`.
    pub async fn audio(&mut self, tag: Bytes, timestamp_ms: u32) -> anyhow::Result<()> {
        let packet =
            self.session
                .publish_audio_data(tag, RtmpTimestamp::new(timestamp_ms), false)?;
        self.send_results(vec![packet]).await
    }

    /// Sends one FLV tag as the RTMP message it becomes (script data is skipped).
    pub async fn tag(&mut self, tag: &FlvTag) -> anyhow::Result<()> {
        match tag.kind {
            FlvTagKind::Audio => self.audio(tag.body.clone(), tag.timestamp_ms).await,
            FlvTagKind::Video => self.video(tag.body.clone(), tag.timestamp_ms).await,
            FlvTagKind::Other => Ok(()),
        }
    }

    /// True if the server closes the connection within `within` (what it sends meanwhile is
    /// read and dropped).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    async fn send_results(&mut self, results: Vec<ClientSessionResult>) -> anyhow::Result<()> {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.socket.write_all(&packet.bytes).await?;
            }
        }
        Ok(())
    }

    async fn handle(&mut self, bytes: &[u8]) -> anyhow::Result<Vec<ClientSessionEvent>> {
        let results = self.session.handle_input(bytes)?;
        let mut events = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.socket.write_all(&packet.bytes).await?
                }
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    async fn wait_for(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.socket.read(&mut buf)).await??;
            anyhow::ensure!(n > 0, "the server closed the connection");
            let events = self.handle(&buf[..n]).await?;
            if let Some(event) = events.iter().find(|e| !want(e) && is_refusal(e)) {
                anyhow::bail!("refused: {event:?}");
            }
            if events.iter().any(&want) {
                return Ok(());
            }
        }
    }
}

fn is_refusal(event: &ClientSessionEvent) -> bool {
    matches!(event, ClientSessionEvent::ConnectionRequestRejected { .. })
}
