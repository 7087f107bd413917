//! HTTP/2 frames written by hand, for the tests that must send what no well-behaved client
//! sends: floods of streams, resets, CONTINUATION and PING frames, paths with quotes, and
//! connections that never read. Headers are HPACK literals without Huffman coding (RFC 7541,
//! section 6.2.2), which every decoder accepts.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut bytes = Vec::with_capacity(9 + payload.len());
    bytes.extend_from_slice(&length.to_be_bytes()[1..]);
    bytes.push(kind);
    bytes.push(flags);
    bytes.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// An HPACK integer with a prefix of `bits` bits, the first byte's high bits set to `high`.
fn integer(value: usize, bits: u32, high: u8, out: &mut Vec<u8>) {
    let max = (1usize << bits) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of literal fields without indexing.
pub fn header_block(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        integer(name.len(), 7, 0, &mut block);
        block.extend_from_slice(name.as_bytes());
        integer(value.len(), 7, 0, &mut block);
        block.extend_from_slice(value);
    }
    block
}

/// The header block of a gRPC call to `path`, with extra fields (a token, say).
pub fn grpc_headers(path: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut fields: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":scheme", b"http"),
        (":path", path),
        (":authority", b"localhost"),
        ("content-type", b"application/grpc"),
        ("te", b"trailers"),
    ];
    fields.extend_from_slice(extra);
    header_block(&fields)
}

/// A gRPC message frame body: flag, length, message.
pub fn grpc_message(message: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
    bytes.extend_from_slice(message);
    bytes
}

/// A raw connection: the preface and an empty SETTINGS frame already sent.
#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        let mut connection = Connection { stream };
        connection.send(PREFACE);
        connection.send(&frame(SETTINGS, 0, 0, &[]));
        connection
    }

    /// Writes `bytes`; false once the server has closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send frames");
    }

    /// Reads whatever arrives for `wait`, returning the bytes and whether the server closed.
    pub fn drain(&mut self, wait: Duration) -> (Vec<u8>, bool) {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let deadline = std::time::Instant::now() + wait;
        let mut received = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while std::time::Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return (received, true),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return (received, true),
            }
        }
        (received, false)
    }
}

/// The frame types in `bytes` (a stream of frames from the server), in order.
pub fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let length = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        types.push(bytes[at + 3]);
        at += 9 + length;
    }
    types
}
