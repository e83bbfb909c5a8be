//! DNS over TCP: length-prefixed messages reassembled from the segments the kernel copies.
//!
//! glibc and the runner's .NET resolver retry over TCP when a UDP answer comes back truncated
//! (long CNAME chains, many addresses). On TCP a DNS message is a 2-byte big-endian length then
//! the message; several may follow each other on one connection, and a message may be split over
//! segments (or several may share one). The kernel copies each payload-carrying segment to or
//! from port 53 with its sequence number, at most `DNS_PAYLOAD_MAX` bytes of it.
//!
//! Per stream (one direction of one connection) this keeps the bytes of the current message
//! from its length prefix on. Retransmitted bytes are dropped by sequence number. When a segment
//! was cut by the kernel, the message it belongs to is decoded from what was copied (the decoder
//! keeps the answers that fit and says the rest is missing) and the next message is found from
//! the length prefix. A gap (a segment the capture missed, or a stream joined in the middle)
//! loses the framing: the stream's later segments are counted as undecodable, not guessed at.
//!
//! Bounds: at most [`MAX_STREAMS`] streams and [`MAX_STREAM_BYTES`] buffered bytes in all; the
//! least recently active stream is dropped first (counted), and a stream idle for
//! [`STREAM_IDLE_NS`] is forgotten.

use std::collections::HashMap;

/// Streams followed at once.
pub const MAX_STREAMS: usize = 4096;
/// Bytes buffered over all streams.
pub const MAX_STREAM_BYTES: usize = 4 << 20;
/// A stream without a segment for this long is forgotten.
pub const STREAM_IDLE_NS: u64 = 60_000_000_000;

/// One direction of one TCP connection: (socket cookie, response direction, client, server).
pub type StreamKey = (u64, bool, std::net::SocketAddr, std::net::SocketAddr);

/// A DNS message taken out of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpMessage {
    /// The message's bytes that were copied (without the length prefix).
    pub bytes: Vec<u8>,
    /// The message's length on the wire (from its prefix).
    pub wire_len: u32,
    /// Part of the message was not copied (`bytes` is shorter than `wire_len`).
    pub cut: bool,
}

/// Counters of the reassembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    pub messages: u64,
    /// Segments that could not be placed (a gap before them, or a stream that lost its framing).
    pub undecodable_segments: u64,
    /// Streams dropped to stay within the bounds.
    pub evicted_streams: u64,
}

#[derive(Clone, Debug)]
struct Stream {
    /// Sequence number of the next byte expected.
    next: u32,
    /// Sequence number of the current message's length prefix.
    msg_start: u32,
    /// Copied bytes from `msg_start` on, contiguous.
    buf: Vec<u8>,
    /// Bytes after `buf` were not copied (the kernel cut a segment).
    hole: bool,
    /// The framing is lost: later segments are counted, not decoded.
    lost: bool,
    last_ns: u64,
}

/// The streams being reassembled.
#[derive(Clone, Debug, Default)]
pub struct TcpStreams {
    streams: HashMap<StreamKey, Stream>,
    bytes: usize,
    stats: TcpStats,
}

/// `a - b` in sequence space, as a signed distance.
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl TcpStreams {
    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    /// Bytes buffered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes one segment: `seq` its sequence number, `wire_len` its payload length on the wire,
    /// `data` the bytes copied (a prefix of the payload). Returns the messages it completed.
    pub fn segment(
        &mut self,
        ts_ns: u64,
        key: StreamKey,
        seq: u32,
        wire_len: u32,
        data: &[u8],
    ) -> Vec<TcpMessage> {
        self.expire(ts_ns);
        if wire_len == 0 {
            return Vec::new();
        }
        if !self.streams.contains_key(&key) {
            while self.streams.len() >= MAX_STREAMS {
                self.evict_oldest();
            }
            // A new stream: its first payload starts a message (a lookup opens a connection).
            self.streams.insert(
                key,
                Stream {
                    next: seq,
                    msg_start: seq,
                    buf: Vec::new(),
                    hole: false,
                    lost: false,
                    last_ns: ts_ns,
                },
            );
        }
        let Some(stream) = self.streams.get_mut(&key) else {
            return Vec::new();
        };
        stream.last_ns = ts_ns;
        let before = stream.buf.len();
        let mut out = Vec::new();
        let ahead = seq_diff(seq, stream.next);
        if stream.lost || ahead > 0 {
            // A gap: bytes were missed, and with them where the next message starts.
            stream.lost = true;
            stream.buf.clear();
            self.stats.undecodable_segments += 1;
        } else {
            // Skip what was already taken (a retransmission, whole or overlapping).
            let skip = usize::try_from(-ahead).unwrap_or(usize::MAX);
            let end = seq.wrapping_add(wire_len);
            if seq_diff(end, stream.next) > 0 {
                if !stream.hole {
                    match data.get(skip..) {
                        Some(fresh) => stream.buf.extend_from_slice(fresh),
                        None => stream.hole = true,
                    }
                    if data.len() < usize::try_from(wire_len).unwrap_or(usize::MAX) {
                        stream.hole = true;
                    }
                }
                stream.next = end;
                take_messages(stream, &mut out);
            }
        }
        self.bytes = (self.bytes + stream.buf.len()).saturating_sub(before);
        self.stats.messages += out.len() as u64;
        while self.bytes > MAX_STREAM_BYTES {
            self.evict_oldest();
        }
        out
    }

    fn evict_oldest(&mut self) {
        let Some(oldest) = self
            .streams
            .iter()
            .min_by_key(|(_, s)| s.last_ns)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(s) = self.streams.remove(&oldest) {
            self.bytes = self.bytes.saturating_sub(s.buf.len());
        }
        self.stats.evicted_streams += 1;
    }

    fn expire(&mut self, now_ns: u64) {
        if self
            .streams
            .values()
            .all(|s| now_ns.saturating_sub(s.last_ns) < STREAM_IDLE_NS)
        {
            return;
        }
        let mut freed = 0;
        self.streams.retain(|_, s| {
            let keep = now_ns.saturating_sub(s.last_ns) < STREAM_IDLE_NS;
            if !keep {
                freed += s.buf.len();
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

/// Takes the messages whose bytes have all passed on the wire.
fn take_messages(stream: &mut Stream, out: &mut Vec<TcpMessage>) {
    loop {
        let Some(prefix) = stream.buf.get(..2) else {
            if stream.hole && stream.buf.len() < 2 && stream.next != stream.msg_start {
                // The prefix itself was not copied: the framing is lost.
                stream.lost = true;
                stream.buf.clear();
            }
            return;
        };
        let len = u32::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        let total = 2 + len;
        let passed = stream.next.wrapping_sub(stream.msg_start);
        if passed < total {
            return;
        }
        let total_usize = usize::try_from(total).unwrap_or(usize::MAX);
        let copied = stream.buf.len().min(total_usize);
        out.push(TcpMessage {
            bytes: stream.buf[2..copied].to_vec(),
            wire_len: len,
            cut: copied < total_usize,
        });
        stream.msg_start = stream.msg_start.wrapping_add(total);
        if stream.buf.len() > total_usize {
            stream.buf.drain(..total_usize);
        } else {
            stream.buf.clear();
            if stream.hole {
                if stream.msg_start == stream.next {
                    // The cut ended with the message: the next segment starts clean.
                    stream.hole = false;
                } else {
                    stream.lost = true;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StreamKey {
        (
            7,
            true,
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:53".parse().unwrap(),
        )
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn whole(bytes: &[u8]) -> TcpMessage {
        TcpMessage {
            bytes: bytes.to_vec(),
            wire_len: u32::try_from(bytes.len()).unwrap(),
            cut: false,
        }
    }

    #[test]
    fn one_message_split_over_segments_and_two_in_one() {
        let mut s = TcpStreams::default();
        let a = framed(b"first message");
        let seq = 1000u32;
        assert!(s.segment(1, key(), seq, 5, &a[..5]).is_empty());
        let got = s.segment(2, key(), seq + 5, (a.len() - 5) as u32, &a[5..]);
        assert_eq!(got, [whole(b"first message")]);
        let mut two = framed(b"second");
        two.extend(framed(b"third"));
        let next = seq + a.len() as u32;
        let got = s.segment(3, key(), next, two.len() as u32, &two);
        assert_eq!(got, [whole(b"second"), whole(b"third")]);
        assert_eq!(s.stats().messages, 3);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn retransmissions_are_not_read_twice_and_sequence_numbers_wrap() {
        let mut s = TcpStreams::default();
        let a = framed(b"hello dns");
        let seq = u32::MAX - 3;
        assert!(s.segment(1, key(), seq, 6, &a[..6]).is_empty());
        // The same first segment again, then an overlapping one.
        assert!(s.segment(2, key(), seq, 6, &a[..6]).is_empty());
        let got = s.segment(3, key(), seq.wrapping_add(4), (a.len() - 4) as u32, &a[4..]);
        assert_eq!(got, [whole(b"hello dns")]);
        assert!(s.segment(4, key(), seq, a.len() as u32, &a).is_empty());
    }

    #[test]
    fn a_cut_segment_yields_what_was_copied_and_the_next_message_still_frames() {
        let mut s = TcpStreams::default();
        let big = vec![0xab; 1000];
        let mut stream = framed(&big);
        stream.extend(framed(b"after"));
        // The kernel copies 512 bytes of each segment.
        let first = &stream[..1002];
        let got = s.segment(1, key(), 0, 1002, &first[..512]);
        assert_eq!(
            got,
            [TcpMessage {
                bytes: vec![0xab; 510],
                wire_len: 1000,
                cut: true
            }]
        );
        let got = s.segment(2, key(), 1002, 7, &stream[1002..]);
        assert_eq!(got, [whole(b"after")]);
    }

    #[test]
    fn a_gap_loses_the_framing_and_is_counted() {
        let mut s = TcpStreams::default();
        let a = framed(b"some message here");
        assert!(s.segment(1, key(), 0, 4, &a[..4]).is_empty());
        assert!(s.segment(2, key(), 10, 4, &a[10..14]).is_empty());
        assert!(s.segment(3, key(), 14, 5, &a[14..]).is_empty());
        assert_eq!(s.stats().undecodable_segments, 2);
        // Garbage never panics.
        for n in 0..40u32 {
            let _ = s.segment(4, (n.into(), false, key().2, key().3), n * 7, n, &[0xff; 3]);
        }
    }

    #[test]
    fn streams_are_bounded() {
        let mut s = TcpStreams::default();
        for i in 0..(MAX_STREAMS as u64 + 10) {
            let k = (i, false, key().2, key().3);
            s.segment(i, k, 0, 1, &[0]);
        }
        assert_eq!(s.stats().evicted_streams, 10);
        assert!(s.streams.len() <= MAX_STREAMS);
        // Idle streams go.
        s.segment(STREAM_IDLE_NS * 3, key(), 0, 1, &[0]);
        assert_eq!(s.streams.len(), 1);
    }
}
