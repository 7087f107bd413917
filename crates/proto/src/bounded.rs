//! The codec of every generated service: prost's, with one step before decoding a
//! `ComputeRequest` or `ComputeStreamRequest`: the memory the decoded message will take is
//! estimated from its wire bytes and offered to whoever set [`DECODE_RESERVE`] for the call
//! (the server's memory budget), which may refuse it.
//!
//! Why: prost turns each 2-byte empty string of a `StringValues` column into a 24-byte
//! `String` in a `Vec` that grows by doubling (up to 48 bytes), and each 1-byte varint of a
//! packed column into 8 bytes (up to 16): one 64 MiB message can take 1.5 GiB once decoded,
//! before any service code sees it. The estimate walks the message's wire format (linear,
//! allocation-free) with the schema of the few message types that carry rows; other messages
//! are small and decode as prost would.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Buf as _;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// A call's hook for the decoded size of its request messages: given the bytes one message
/// will need, reserve them or refuse with the status the caller gets.
#[derive(Clone)]
pub struct DecodeReserve(pub Arc<dyn Fn(u64) -> Result<(), Status> + Send + Sync>);

impl std::fmt::Debug for DecodeReserve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecodeReserve")
    }
}

tokio::task_local! {
    /// Set by the server around each call; absent (clients, tests), nothing is reserved.
    pub static DECODE_RESERVE: DecodeReserve;
}

/// prost's codec, reserving each row-carrying message's decoded size first.
#[derive(Debug)]
pub struct BoundedCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder {
            inner: ProstDecoder::default(),
        }
    }
}

/// The decoder of [`BoundedCodec`].
#[derive(Debug)]
pub struct BoundedDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: prost::Message + Default + 'static> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let shape = if TypeId::of::<U>() == TypeId::of::<crate::v1::ComputeRequest>() {
            Some(Shape::ComputeRequest)
        } else if TypeId::of::<U>() == TypeId::of::<crate::v1::ComputeStreamRequest>() {
            Some(Shape::ComputeStreamRequest)
        } else {
            None
        };
        if let Some(shape) = shape {
            // A DecodeBuf is one contiguous message (tonic buffers it whole).
            let bytes = &buf.chunk()[..buf.remaining().min(buf.chunk().len())];
            let estimate = decoded_size(bytes, shape);
            let reserved = DECODE_RESERVE.try_with(|reserve| (reserve.0)(estimate));
            if let Ok(Err(status)) = reserved {
                return Err(status);
            }
        }
        self.inner.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The message types whose wire layout the estimate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    ComputeRequest,
    ComputeStreamRequest,
    StreamHeader,
    Table,
    Column,
    /// `Int64Values` or `BoolValues`: one field of packed or single varints, each taking this
    /// many bytes decoded.
    Numbers(u64),
    /// `DoubleValues`: packed or single 8-byte doubles.
    Doubles,
    StringValues,
    /// A map entry of parameters (`string` key, `Value`), or anything else small.
    Opaque,
}

/// Bytes a `Vec` element costs at most, growth by doubling included.
const fn grown(size: u64) -> u64 {
    2 * size
}
/// A `String` or `Vec<u8>`'s header on the heap of its container.
const STRING: u64 = 24;
/// The heap bytes of a decoded string or byte field of `len` bytes: a `Vec<u8>` reserves at
/// least 8 bytes once it holds any.
const fn text(len: u64) -> u64 {
    if len == 0 {
        0
    } else if len < 8 {
        8
    } else {
        len
    }
}
/// A `Column` struct in `Table.columns`.
const COLUMN: u64 = 128;

/// Bytes a message of `shape` takes once prost has decoded it: its own heap data (strings,
/// vectors, nested messages), not its inline size. Malformed input gets an estimate of what
/// was read so far; prost then refuses it.
pub fn decoded_size(bytes: &[u8], shape: Shape) -> u64 {
    let mut total = 0u64;
    let mut reader = Reader { bytes, at: 0 };
    while let Some((field, wire)) = reader.key() {
        match wire {
            // Varint
            0 => {
                if reader.varint().is_none() {
                    break;
                }
                if let Shape::Numbers(size) = shape {
                    total += grown(size);
                }
            }
            // 64-bit
            1 => {
                if reader.skip(8).is_none() {
                    break;
                }
                if shape == Shape::Doubles {
                    total += grown(8);
                }
            }
            // 32-bit
            5 => {
                if reader.skip(4).is_none() {
                    break;
                }
            }
            // Length-delimited
            2 => {
                let Some(payload) = reader.length_delimited() else {
                    break;
                };
                let len = payload.len() as u64;
                total += match (shape, field) {
                    (Shape::ComputeRequest, 3) => decoded_size(payload, Shape::Table),
                    (Shape::ComputeRequest, 4) | (Shape::StreamHeader, 3) => grown(STRING) + len,
                    (Shape::ComputeRequest | Shape::StreamHeader, 2) => {
                        // A parameter: key and value, strings at most as long as the entry.
                        2 * STRING + 2 * text(len) + 64
                    }
                    (Shape::ComputeStreamRequest, 1) => decoded_size(payload, Shape::StreamHeader),
                    (Shape::ComputeStreamRequest, 2) => decoded_size(payload, Shape::Table),
                    (Shape::StreamHeader, 4) => grown(64) + text(len),
                    (Shape::Table, 1) => grown(COLUMN) + decoded_size(payload, Shape::Column),
                    // arrow_ipc: a slice of the received buffer.
                    (Shape::Table, 2) => 0,
                    (Shape::Column, 1 | 7) => text(len),
                    (Shape::Column, 2 | 6) => decoded_size(payload, Shape::Numbers(8)),
                    (Shape::Column, 3) => decoded_size(payload, Shape::Doubles),
                    (Shape::Column, 4) => decoded_size(payload, Shape::StringValues),
                    (Shape::Column, 5) => decoded_size(payload, Shape::Numbers(1)),
                    (Shape::StringValues, 1) => grown(STRING) + text(len),
                    // Packed numbers: one value per varint (a byte below 0x80 ends one), or
                    // per 8 bytes of doubles.
                    (Shape::Numbers(size), 1) => {
                        grown(size) * payload.iter().filter(|b| **b < 0x80).count() as u64
                    }
                    (Shape::Doubles, 1) => grown(8) * (len / 8),
                    _ => text(len),
                };
            }
            _ => break,
        }
    }
    total
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn key(&mut self) -> Option<(u64, u64)> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let key = self.varint()?;
        Some((key >> 3, key & 7))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        if end > self.bytes.len() {
            return None;
        }
        self.at = end;
        Some(())
    }

    fn length_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let start = self.at;
        self.skip(len)?;
        Some(&self.bytes[start..self.at])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::v1 as pb;

    fn request(columns: Vec<pb::Column>) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::ComputeRequest {
            metric: "nps".into(),
            input: Some(pb::Table {
                columns,
                ..Default::default()
            }),
            group_by: vec!["region".into()],
            ..Default::default()
        })
    }

    fn strings(values: Vec<String>) -> pb::Column {
        pb::Column {
            name: "comment".into(),
            values: Some(pb::column::Values::StringValues(pb::StringValues {
                values,
            })),
            ..Default::default()
        }
    }

    fn ints(values: Vec<i64>) -> pb::Column {
        pb::Column {
            name: "score".into(),
            values: Some(pb::column::Values::Int64Values(pb::Int64Values { values })),
            ..Default::default()
        }
    }

    #[test]
    fn empty_strings_are_counted_at_what_prost_makes_of_them() {
        let wire = request(vec![strings(vec![String::new(); 100_000])]);
        let estimate = decoded_size(&wire, Shape::ComputeRequest);
        // 2 bytes on the wire, a 24-byte String in a doubling Vec.
        assert!(estimate >= 100_000 * 24, "{estimate}");
        assert!(estimate <= 100_000 * 48 + 1024, "{estimate}");
    }

    #[test]
    fn small_packed_integers_are_counted_at_eight_bytes_or_more() {
        let wire = request(vec![ints(vec![9; 100_000])]);
        let estimate = decoded_size(&wire, Shape::ComputeRequest);
        assert!(wire.len() < 110_000);
        assert!(estimate >= 100_000 * 8, "{estimate}");
        assert!(estimate <= 100_000 * 16 + 1024, "{estimate}");
    }

    #[test]
    fn a_stream_chunk_is_estimated_like_a_request_table() {
        let chunk = prost::Message::encode_to_vec(&pb::ComputeStreamRequest {
            message: Some(pb::compute_stream_request::Message::Chunk(pb::Table {
                columns: vec![ints(vec![1; 1000]), strings(vec!["abc".into(); 1000])],
                ..Default::default()
            })),
        });
        let estimate = decoded_size(&chunk, Shape::ComputeStreamRequest);
        assert!(estimate >= 1000 * 8 + 1000 * 27, "{estimate}");
    }

    #[test]
    fn truncated_or_garbage_bytes_end_the_walk() {
        let wire = request(vec![ints(vec![1, 2, 3])]);
        for cut in 0..wire.len() {
            let _ = decoded_size(&wire[..cut], Shape::ComputeRequest);
        }
        assert_eq!(decoded_size(&[0xff; 16], Shape::ComputeRequest), 0);
    }
}
