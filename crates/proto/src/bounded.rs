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
    /// An entry of a `tables` map: a `string` key and a `Table`.
    TableEntry,
    /// An entry of a `parameters` map: a `string` key and a `Value`.
    ParameterEntry,
    /// A message of scalars and strings (`Value`, `ColumnSchema`): each string costs its bytes.
    Strings,
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
/// Bytes one entry of `size` bytes costs a `HashMap` at most: hashbrown keeps its buckets at
/// most 7/8 full in a power-of-two table (so up to 16/7 buckets an entry), each bucket with a
/// control byte, and holds the old table beside the new one while it grows (3 × 8/7 ≈ 3.43
/// buckets an entry at the peak); 16 more for a small map's control group.
const fn hashed(size: u64) -> u64 {
    4 * (size + 1) + 16
}
/// A `parameters` entry as a `HashMap` holds it.
const PARAMETER: u64 = std::mem::size_of::<(String, crate::v1::Value)>() as u64;
/// A `tables` entry as a `HashMap` holds it.
const NAMED_TABLE: u64 = std::mem::size_of::<(String, crate::v1::Table)>() as u64;

/// Bytes a message of `shape` takes once prost has decoded it: its own heap data (strings,
/// vectors, nested messages), not its inline size. Malformed input gets an estimate of what
/// prost decodes before it refuses the message.
///
/// The walk reads the bytes as prost does, not as a well-formed message nests them: prost
/// checks a nested field's length against the whole buffer rather than its parent's, decodes
/// it, and only then finds it ran past its parent's end; it skips an unknown field's group and
/// goes on; it reads a map field's entry whatever (valid) wire type its key gives. Walking each
/// nested payload as a slice of its own would let a forged length, a group or a map key hide
/// the bytes prost then decodes as something else (the decoding fuzzer found the length and
/// the map key; prost's `skip_field` showed the group).
pub fn decoded_size(bytes: &[u8], shape: Shape) -> u64 {
    let mut walk = Walk {
        bytes,
        at: 0,
        total: 0,
    };
    // An error is where prost stops too: the total so far is what it decoded.
    let _ = walk.message(bytes.len(), shape);
    walk.total
}

/// prost refuses the message here.
struct Refused;

/// The deepest group nesting prost skips (its recursion limit).
const GROUP_DEPTH: u32 = 100;

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    total: u64,
}

impl Walk<'_> {
    /// The fields of one message of `shape`, up to `end`, as prost's merge loop takes them.
    fn message(&mut self, end: usize, shape: Shape) -> Result<(), Refused> {
        while self.at < end {
            let key = self.varint()?;
            let (field, wire) = (key >> 3, key & 7);
            // prost merges a map entry without looking at the wire type the key gave.
            let map = matches!(
                (shape, field),
                (Shape::ComputeRequest | Shape::StreamHeader, 2 | 6)
            );
            match if map && wire <= 5 { 2 } else { wire } {
                0 => {
                    self.varint()?;
                    if let Shape::Numbers(size) = shape {
                        self.total += grown(size);
                    }
                }
                1 => {
                    self.skip(8)?;
                    if shape == Shape::Doubles {
                        self.total += grown(8);
                    }
                }
                5 => self.skip(4)?,
                3 => self.group(field, 0)?,
                2 => self.length_delimited(shape, field)?,
                _ => return Err(Refused),
            }
        }
        Ok(())
    }

    fn length_delimited(&mut self, shape: Shape, field: u64) -> Result<(), Refused> {
        let len = usize::try_from(self.varint()?).map_err(|_| Refused)?;
        // prost's check: against all that is left, not the parent's end.
        if len > self.bytes.len() - self.at {
            return Err(Refused);
        }
        let end = self.at + len;
        let nested = |walk: &mut Self, extra: u64, inner: Shape| {
            walk.total += extra;
            walk.message(end, inner)?;
            if walk.at == end { Ok(()) } else { Err(Refused) }
        };
        match (shape, field) {
            (Shape::ComputeRequest, 3) | (Shape::ComputeStreamRequest, 2) => {
                return nested(self, 0, Shape::Table);
            }
            (Shape::ComputeStreamRequest, 1) => return nested(self, 0, Shape::StreamHeader),
            (Shape::ComputeRequest | Shape::StreamHeader, 2) => {
                return nested(self, hashed(PARAMETER), Shape::ParameterEntry);
            }
            (Shape::ComputeRequest | Shape::StreamHeader, 6) => {
                return nested(self, hashed(NAMED_TABLE), Shape::TableEntry);
            }
            (Shape::TableEntry, 2) => return nested(self, 0, Shape::Table),
            (Shape::ParameterEntry, 2) => return nested(self, 0, Shape::Strings),
            (Shape::StreamHeader, 4) => return nested(self, grown(64), Shape::Strings),
            (Shape::Table, 1) => return nested(self, grown(COLUMN), Shape::Column),
            (Shape::Column, 2 | 6) => return nested(self, 0, Shape::Numbers(8)),
            (Shape::Column, 3) => return nested(self, 0, Shape::Doubles),
            (Shape::Column, 4) => return nested(self, 0, Shape::StringValues),
            (Shape::Column, 5) => return nested(self, 0, Shape::Numbers(1)),
            _ => {}
        }
        let payload = &self.bytes[self.at..end];
        let len = len as u64;
        self.total += match (shape, field) {
            (Shape::ComputeRequest, 4) | (Shape::StreamHeader, 3) => grown(STRING) + text(len),
            // arrow_ipc: a slice of the received buffer.
            (Shape::Table, 2) => 0,
            (Shape::StringValues, 1) => grown(STRING) + text(len),
            // Packed numbers: one value per varint (a byte below 0x80 ends one; the last may
            // end beyond the field, prost reading on), or per 8 bytes of doubles.
            (Shape::Numbers(size), 1) => {
                let ended = payload.iter().filter(|b| **b < 0x80).count() as u64;
                let straddling = u64::from(payload.last().is_some_and(|b| *b >= 0x80));
                grown(size) * (ended + straddling)
            }
            (Shape::Doubles, 1) => grown(8) * len.div_ceil(8),
            // A string, bytes, or a field prost skips.
            _ => text(len),
        };
        self.at = end;
        Ok(())
    }

    /// Skips a group of `field` as prost does an unknown field's: to its matching end.
    fn group(&mut self, field: u64, depth: u32) -> Result<(), Refused> {
        if depth >= GROUP_DEPTH {
            return Err(Refused);
        }
        loop {
            let key = self.varint()?;
            let (inner, wire) = (key >> 3, key & 7);
            match wire {
                0 => {
                    self.varint()?;
                }
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| Refused)?;
                    self.skip(len)?;
                }
                3 => self.group(inner, depth + 1)?,
                4 if inner == field => return Ok(()),
                _ => return Err(Refused),
            }
        }
    }

    fn varint(&mut self) -> Result<u64, Refused> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(Refused)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Refused)
    }

    fn skip(&mut self, n: usize) -> Result<(), Refused> {
        let end = self.at.checked_add(n).ok_or(Refused)?;
        if end > self.bytes.len() {
            return Err(Refused);
        }
        self.at = end;
        Ok(())
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
