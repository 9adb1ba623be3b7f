//! A bounded reading of the RTMP chunk stream, ahead of rml_rtmp.
//!
//! rml_rtmp trusts what a client declares: it reserves a message's whole declared length (up to
//! 16 MiB) as soon as its first chunk arrives, accepts any chunk size, keeps every chunk stream id
//! it ever saw, and decodes AMF0 commands recursively. Every byte read from a connection passes
//! through [`ChunkGuard::inspect`] before rml_rtmp sees it; the guard follows the chunk stream the
//! way rml_rtmp's deserializer does (one message assembled at a time, headers compressed against
//! the previous one of their chunk stream) and refuses, before rml_rtmp acts on them:
//!
//! - messages longer than the connection's current limit: a few KiB until a publish is authorized
//!   ([`ChunkGuard::authorized`] raises it to the largest frame), so an unauthenticated client
//!   cannot make the server hold more than that;
//! - AMF commands and data (`connect`, `@setDataFrame`, ...) larger than
//!   [`MAX_COMMAND_BYTES`] or nesting deeper than [`MAX_AMF_DEPTH`];
//! - headers that contradict the message being assembled (which rml_rtmp would answer with an
//!   arithmetic overflow), unknown chunk streams, a chunk size of 0, and more than
//!   [`MAX_CHUNK_STREAMS`] chunk streams.

use std::collections::HashMap;

use super::amf0;

/// Largest AMF command or data message accepted (encoders send well under 4 KiB).
pub(crate) const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Deepest nesting of AMF objects and arrays accepted (encoders send 1 or 2).
pub(crate) const MAX_AMF_DEPTH: usize = 16;
/// Chunk stream ids one connection may use (encoders use fewer than 10).
pub(crate) const MAX_CHUNK_STREAMS: usize = 64;

const SET_CHUNK_SIZE: u8 = 1;
/// AMF3 data, AMF3 command, AMF0 data, AMF0 command: the types rml_rtmp decodes as AMF0.
const AMF_TYPES: [u8; 4] = [15, 17, 18, 20];
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
const LARGEST_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// Why the guard refused a connection's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A message longer than the connection may send at this point.
    #[error("RTMP message of {length} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The declared length.
        length: u32,
        /// The limit in force.
        limit: usize,
    },
    /// An AMF command nesting deeper than [`MAX_AMF_DEPTH`].
    #[error("AMF command nests deeper than {MAX_AMF_DEPTH} levels")]
    TooDeep,
    /// A compressed header on a chunk stream without a full header first.
    #[error("chunk stream {0} continued before it started")]
    UnknownChunkStream(u32),
    /// More chunk streams than [`MAX_CHUNK_STREAMS`].
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    /// A header declaring a message shorter than what was already received of it.
    #[error("chunk header contradicts the message being received")]
    InconsistentHeader,
    /// A Set Chunk Size of 0, above 2^31-1, or shorter than 4 bytes.
    #[error("invalid Set Chunk Size message")]
    InvalidChunkSize,
}

/// What the guard remembers of a chunk stream's last header.
#[derive(Debug, Clone, Copy)]
struct StreamHeader {
    message_length: u32,
    type_id: u8,
    /// The 24-bit timestamp field; at its maximum an extended timestamp follows.
    timestamp_field: u32,
}

/// Follows one connection's chunk stream and enforces the limits above.
#[derive(Debug)]
pub(crate) struct ChunkGuard {
    /// The client's chunk size (it changes it with Set Chunk Size).
    chunk_size: u32,
    /// Longest message accepted now.
    max_message: usize,
    /// The header bytes of the chunk being read, until complete.
    header: Vec<u8>,
    /// Payload bytes of the current chunk still to come, once its header is complete.
    chunk_left: usize,
    /// The header the current chunk uses.
    current: StreamHeader,
    current_csid: u32,
    /// Bytes of the message being assembled (rml_rtmp assembles one at a time, whatever the
    /// chunk stream).
    received: usize,
    /// Its first bytes, for commands and Set Chunk Size; never more than [`MAX_COMMAND_BYTES`].
    kept: Vec<u8>,
    streams: HashMap<u32, StreamHeader>,
}

impl ChunkGuard {
    /// A guard for a new connection, allowing messages of up to `unauthorized_max` bytes.
    pub(crate) fn new(unauthorized_max: usize) -> Self {
        Self {
            chunk_size: 128,
            max_message: unauthorized_max,
            header: Vec::with_capacity(18),
            chunk_left: 0,
            current: StreamHeader {
                message_length: 0,
                type_id: 0,
                timestamp_field: 0,
            },
            current_csid: 0,
            received: 0,
            kept: Vec::new(),
            streams: HashMap::new(),
        }
    }

    /// The publish was authorized: messages may now be as large as `max_message` bytes.
    pub(crate) fn authorized(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// Bytes the guard holds for this connection.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.kept.capacity() + self.header.capacity()
    }

    /// Reads `bytes`, the next input of the connection; an error means the connection must be
    /// closed before rml_rtmp sees them.
    pub(crate) fn inspect(&mut self, mut bytes: &[u8]) -> Result<(), ChunkError> {
        while !bytes.is_empty() {
            if self.chunk_left == 0 && !self.read_header(&mut bytes)? {
                return Ok(());
            }
            let n = self.chunk_left.min(bytes.len());
            let room = MAX_COMMAND_BYTES.saturating_sub(self.kept.len());
            self.kept.extend_from_slice(&bytes[..n.min(room)]);
            self.received += n;
            self.chunk_left -= n;
            bytes = &bytes[n..];
            if self.chunk_left == 0 {
                self.end_chunk()?;
            }
        }
        Ok(())
    }

    /// Collects header bytes; true once the header is complete (and checked).
    fn read_header(&mut self, bytes: &mut &[u8]) -> Result<bool, ChunkError> {
        loop {
            // Until the bytes so far decide the header's length, take one at a time.
            let needed = self.header_len()?.unwrap_or(self.header.len() + 1);
            if needed == self.header.len() {
                self.begin_chunk()?;
                return Ok(true);
            }
            if bytes.is_empty() {
                return Ok(false);
            }
            let n = (needed - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            *bytes = &bytes[n..];
        }
    }

    /// The full header length, once the bytes so far decide it.
    fn header_len(&self) -> Result<Option<usize>, ChunkError> {
        let Some(&first) = self.header.first() else {
            return Ok(None);
        };
        let format = first >> 6;
        let basic = basic_len(first);
        let message = MESSAGE_HEADER_LEN[usize::from(format)];
        let before_extended = basic + message;
        if self.header.len() < before_extended {
            return Ok(Some(before_extended).filter(|_| self.header.len() >= basic));
        }
        let timestamp_field = if format == 3 {
            self.previous(self.csid())?.timestamp_field
        } else {
            u24(&self.header[basic..basic + 3])
        };
        let extended = if timestamp_field >= EXTENDED_TIMESTAMP {
            4
        } else {
            0
        };
        Ok(Some(before_extended + extended))
    }

    fn csid(&self) -> u32 {
        match self.header[0] & 0x3f {
            0 => u32::from(self.header[1]) + 64,
            1 => u32::from(self.header[2]) * 256 + u32::from(self.header[1]) + 64,
            x => u32::from(x),
        }
    }

    fn previous(&self, csid: u32) -> Result<StreamHeader, ChunkError> {
        self.streams
            .get(&csid)
            .copied()
            .ok_or(ChunkError::UnknownChunkStream(csid))
    }

    /// Applies a complete header: the chunk's message, its length checked.
    fn begin_chunk(&mut self) -> Result<(), ChunkError> {
        let format = self.header[0] >> 6;
        let csid = self.csid();
        let fields = &self.header[basic_len(self.header[0])..];
        let header = match format {
            0 | 1 => StreamHeader {
                timestamp_field: u24(&fields[0..3]),
                message_length: u24(&fields[3..6]),
                type_id: fields[6],
            },
            2 => StreamHeader {
                timestamp_field: u24(&fields[0..3]),
                ..self.previous(csid)?
            },
            _ => self.previous(csid)?,
        };
        if !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError::TooManyChunkStreams);
        }
        let length = header.message_length as usize;
        if length > self.max_message {
            return Err(ChunkError::MessageTooLarge {
                length: header.message_length,
                limit: self.max_message,
            });
        }
        if length < self.received {
            return Err(ChunkError::InconsistentHeader);
        }
        self.header.clear();
        self.current = header;
        self.current_csid = csid;
        self.chunk_left = (length - self.received).min(self.chunk_size as usize);
        if self.chunk_left == 0 {
            // An empty message is complete with its header.
            self.end_chunk()?;
        }
        Ok(())
    }

    /// The current chunk is complete; so may be its message.
    fn end_chunk(&mut self) -> Result<(), ChunkError> {
        self.streams.insert(self.current_csid, self.current);
        if self.received < self.current.message_length as usize {
            return Ok(());
        }
        let type_id = self.current.type_id;
        let complete = self.received <= MAX_COMMAND_BYTES;
        if type_id == SET_CHUNK_SIZE {
            let size = self
                .kept
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match size {
                Some(size) if (1..=LARGEST_CHUNK_SIZE).contains(&size) => self.chunk_size = size,
                _ => return Err(ChunkError::InvalidChunkSize),
            }
        } else if AMF_TYPES.contains(&type_id) {
            if !complete {
                return Err(ChunkError::MessageTooLarge {
                    length: self.current.message_length,
                    limit: MAX_COMMAND_BYTES,
                });
            }
            // rml_rtmp skips the 0 that AMF3-flagged commands carry in front of AMF0.
            let amf = match self.kept.split_first() {
                Some((0, rest)) if type_id == 17 => rest,
                _ => &self.kept[..],
            };
            if amf0::nests_deeper_than(amf, MAX_AMF_DEPTH) {
                return Err(ChunkError::TooDeep);
            }
        }
        self.received = 0;
        self.kept.clear();
        if self.kept.capacity() > 4096 {
            self.kept = Vec::new();
        }
        Ok(())
    }
}

/// Bytes of the message header after the basic header, by chunk format (0 to 3).
const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

/// Bytes of the basic header that starts with `first`.
fn basic_len(first: u8) -> usize {
    match first & 0x3f {
        0 => 2,
        1 => 3,
        _ => 1,
    }
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn message(type_id: u8, csid_hint: u32, timestamp: u32, data: Vec<u8>) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(timestamp),
            message_stream_id: csid_hint,
            type_id,
            data: Bytes::from(data),
        }
    }

    /// Messages as rml_rtmp's own serializer chunks them (header compression included).
    fn chunked(messages: &[MessagePayload], chunk_size: Option<u32>) -> Vec<u8> {
        let mut serializer = ChunkSerializer::new();
        let mut out = Vec::new();
        if let Some(size) = chunk_size {
            let packet = serializer
                .set_max_chunk_size(size, RtmpTimestamp::new(0))
                .unwrap();
            out.extend(packet.bytes);
        }
        for m in messages {
            out.extend(serializer.serialize(m, false, false).unwrap().bytes);
        }
        out
    }

    fn nested_objects(depth: usize) -> Vec<u8> {
        let mut data = vec![2, 0, 7];
        data.extend_from_slice(b"connect");
        for _ in 0..depth {
            data.extend_from_slice(&[3, 0, 1, b'x']);
        }
        data
    }

    #[test]
    fn follows_real_streams_in_any_split() {
        let messages = vec![
            message(20, 0, 0, nested_objects(2)),
            message(9, 1, 0, vec![7u8; 100_000]),
            message(8, 1, 20, vec![8u8; 300]),
            message(9, 1, 33, vec![9u8; 5_000]),
            message(18, 1, 33, nested_objects(1)),
            message(9, 1, 0x0100_0000, vec![10u8; 700]),
            message(9, 1, 0x0100_0021, vec![11u8; 70]),
        ];
        for chunk_size in [None, Some(4096), Some(60_000)] {
            let bytes = chunked(&messages, chunk_size);
            for split in [1, 3, 7, 128, 4096, bytes.len()] {
                let mut guard = ChunkGuard::new(100_000);
                for piece in bytes.chunks(split) {
                    guard.inspect(piece).unwrap();
                }
                assert_eq!(guard.received, 0, "ends between messages");
                assert!(guard.buffered() <= MAX_COMMAND_BYTES + 64);
            }
        }
    }

    #[test]
    fn refuses_what_rml_rtmp_would_choke_on() {
        let deep = chunked(&[message(20, 0, 0, nested_objects(3200))], None);
        assert_eq!(
            ChunkGuard::new(usize::MAX).inspect(&deep),
            Err(ChunkError::TooDeep)
        );
        let big = chunked(&[message(9, 0, 0, vec![0; 20_000])], Some(1 << 30));
        assert_eq!(
            ChunkGuard::new(8192).inspect(&big[..200]),
            Err(ChunkError::MessageTooLarge {
                length: 20_000,
                limit: 8192
            }),
            "refused at its header, before any payload"
        );
        let mut guard = ChunkGuard::new(8192);
        guard.authorized(1 << 20);
        guard.inspect(&big).unwrap();
        let command = chunked(&[message(20, 0, 0, vec![5; 70_000])], None);
        let mut guard = ChunkGuard::new(1 << 20);
        assert_eq!(
            guard.inspect(&command),
            Err(ChunkError::MessageTooLarge {
                length: 70_000,
                limit: MAX_COMMAND_BYTES
            })
        );
        // Type 3 chunk on a stream never started.
        assert_eq!(
            ChunkGuard::new(8192).inspect(&[0xc5, 1, 2]),
            Err(ChunkError::UnknownChunkStream(5))
        );
        // Set Chunk Size 0.
        let zero = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ChunkGuard::new(8192).inspect(&zero),
            Err(ChunkError::InvalidChunkSize)
        );
        // A message of 200 bytes on stream 3, then a type 1 header claiming 10 bytes after 128
        // were received: rml_rtmp's `length - received` would overflow.
        let mut bytes = vec![0x03, 0, 0, 0, 0, 0, 200, 9, 0, 0, 0, 0];
        bytes.extend([0u8; 128]);
        bytes.extend([0x43, 0, 0, 0, 0, 0, 10, 9]);
        assert_eq!(
            ChunkGuard::new(8192).inspect(&bytes),
            Err(ChunkError::InconsistentHeader)
        );
    }

    #[test]
    fn chunk_streams_are_bounded() {
        let mut guard = ChunkGuard::new(8192);
        let mut bytes = Vec::new();
        for csid in 0..=MAX_CHUNK_STREAMS as u8 {
            // Two-byte basic headers: csid 64 + n; empty messages.
            bytes.extend([0x00, csid, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]);
        }
        assert_eq!(guard.inspect(&bytes), Err(ChunkError::TooManyChunkStreams));
    }
}
