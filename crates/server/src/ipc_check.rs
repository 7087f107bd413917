//! Arrow IPC streams from the network, checked before arrow-rs decodes them.
//!
//! arrow-rs trusts an IPC stream's metadata when it decodes: a compressed buffer's 8-byte
//! "uncompressed length" prefix is allocated as claimed (2^44 bytes aborts the process), an
//! LZ4 frame is decompressed to whatever size it really has, and buffer offsets beyond the
//! body, or schemas it cannot represent, panic deep inside the decoder. So every size a client
//! can claim is read here first, from the flatbuffer metadata and the compression prefixes,
//! and checked against the request's limits before one byte is allocated for it:
//!
//! - the stream's framing (continuation markers, metadata lengths, body lengths) stays inside
//!   the bytes received;
//! - every buffer lies inside its message's body;
//! - rows per batch, all batches' rows, and every field node's length are at most
//!   `server.max_rows`;
//! - compressed bodies are refused unless `server.allow_compressed_arrow` is set; then each
//!   buffer's claimed length counts towards the decoded size, and (once that is reserved) an
//!   LZ4 frame is decompressed into nothing, bounded by its claim, to prove it holds no more;
//! - the decoded size (decompressed buffers and the copy the conversion to the metric's
//!   types makes) is returned, so the caller can reserve it from the memory budget first.
//!
//! What remains (a valid-looking stream that arrow-rs still rejects, or panics on) is caught
//! by the caller and reported as INVALID_ARGUMENT.

use std::io::Read as _;

use arrow_ipc::{CompressionType, MessageHeader};

/// What one IPC input may claim.
#[derive(Debug, Clone, Copy)]
pub struct IpcLimits {
    /// Rows of all record batches together, and the length of any one column.
    pub max_rows: u64,
    /// Whether LZ4- or ZSTD-compressed bodies are accepted.
    pub allow_compressed: bool,
}

impl IpcLimits {
    /// For IPC the client reads from its own server's answers: no row limit, and compression
    /// accepted (each frame still proved against its claimed size).
    pub const ANSWERS: IpcLimits = IpcLimits {
        max_rows: u64::MAX,
        allow_compressed: true,
    };
}

/// What an IPC stream will need once decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcSize {
    /// Bytes the decoded batches and their conversion may allocate beyond the received
    /// bytes: decompressed buffers, plus eight bytes per value of every column (the copy that
    /// casting to the metric's types makes at most).
    pub decoded_bytes: u64,
}

/// Why an IPC stream was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcCheckError {
    /// The bytes are not a well-formed IPC stream.
    #[error("arrow_ipc is not a well-formed Arrow IPC stream: {0}")]
    Malformed(String),
    /// The stream claims more than the limits allow.
    #[error("{0}")]
    TooLarge(String),
    /// A compressed body on a server that accepts none.
    #[error(
        "arrow_ipc holds a body compressed with {0}; this server accepts uncompressed Arrow IPC only: write it without compression (pyarrow.ipc.IpcWriteOptions(compression=None)), or set server.allow_compressed_arrow = true on the server"
    )]
    CompressionRefused(&'static str),
}

const CONTINUATION: u32 = 0xFFFF_FFFF;
/// What an LZ4 frame decoder allocates for itself, whatever the frame: two blocks of the
/// largest block size (4 MiB). Counted once per input that has LZ4 buffers.
const LZ4_DECODER_BYTES: u64 = 8 << 20;
/// Bytes of a compressed buffer's uncompressed-length prefix.
const PREFIX: usize = 8;

/// An IPC stream whose metadata passed [`check`]: its size, and the LZ4 frames still to be
/// proved against their claims ([`Checked::prove`]) once their decoder's memory is reserved.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub size: IpcSize,
    lz4_frames: Vec<Lz4Frame>,
}

#[derive(Debug, Clone)]
struct Lz4Frame {
    message: usize,
    buffer: usize,
    /// The frame's bytes in the stream, after the length prefix.
    start: usize,
    end: usize,
    claimed: u64,
}

impl Checked {
    /// Decompresses each LZ4 frame into nothing, bounded by its claim, to prove it holds no
    /// more than it claims (arrow-rs decompresses LZ4 to its true length and only then
    /// compares). `bytes` are the bytes [`check`] was given.
    pub fn prove(&self, bytes: &[u8]) -> Result<(), IpcCheckError> {
        for frame in &self.lz4_frames {
            let data = bytes.get(frame.start..frame.end).unwrap_or_default();
            let decoder = lz4_flex::frame::FrameDecoder::new(data);
            let fail = |what: String| {
                IpcCheckError::Malformed(format!(
                    "message {}: compressed buffer {}: {what}",
                    frame.message, frame.buffer
                ))
            };
            let actual = std::io::copy(&mut decoder.take(frame.claimed + 1), &mut std::io::sink())
                .map_err(|e| fail(format!("not a valid LZ4 frame: {e}")))?;
            if actual != frame.claimed {
                return Err(fail(format!(
                    "claims {} bytes decompressed but holds {}",
                    frame.claimed,
                    if actual > frame.claimed {
                        "more".to_owned()
                    } else {
                        actual.to_string()
                    }
                )));
            }
        }
        Ok(())
    }
}

/// Walks the IPC stream in `bytes` and checks every size its metadata and length prefixes
/// claim against `limits`, allocating nothing for them.
pub fn check(bytes: &[u8], limits: &IpcLimits) -> Result<Checked, IpcCheckError> {
    let malformed = |what: String| IpcCheckError::Malformed(what);
    let mut size = IpcSize::default();
    let mut rows_in_all = 0u64;
    let mut lz4_frames = Vec::new();
    let mut lz4 = false;
    let mut at = 0usize;
    let mut index = 0usize;
    while at < bytes.len() {
        index += 1;
        let word = read_u32(bytes, at).ok_or_else(|| {
            malformed(format!(
                "message {index} is cut off in its length at byte {at}"
            ))
        })?;
        at += 4;
        let metadata_len = if word == CONTINUATION {
            let len = read_u32(bytes, at).ok_or_else(|| {
                malformed(format!(
                    "message {index} is cut off in its length at byte {at}"
                ))
            })?;
            at += 4;
            len
        } else {
            word
        };
        if metadata_len == 0 {
            // End of stream: nothing after it is read.
            break;
        }
        let metadata_len = usize::try_from(metadata_len)
            .ok()
            .filter(|&len| len <= i32::MAX as usize)
            .ok_or_else(|| malformed(format!("message {index} has a negative length")))?;
        let metadata = at
            .checked_add(metadata_len)
            .and_then(|end| bytes.get(at..end))
            .ok_or_else(|| {
                malformed(format!(
                    "message {index} claims {metadata_len} bytes of metadata but only {} remain",
                    bytes.len() - at
                ))
            })?;
        at += metadata_len;
        let message = arrow_ipc::root_as_message(metadata)
            .map_err(|e| malformed(format!("message {index} has invalid metadata: {e}")))?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| {
            malformed(format!(
                "message {index} has a negative body length ({})",
                message.bodyLength()
            ))
        })?;
        let body = at
            .checked_add(body_len)
            .and_then(|end| bytes.get(at..end))
            .ok_or_else(|| {
                malformed(format!(
                    "message {index} claims a body of {body_len} bytes but only {} remain",
                    bytes.len() - at
                ))
            })?;
        at += body_len;
        let batch = match message.header_type() {
            MessageHeader::RecordBatch => message.header_as_record_batch(),
            MessageHeader::DictionaryBatch => message
                .header_as_dictionary_batch()
                .and_then(|dictionary| dictionary.data()),
            MessageHeader::Schema => {
                if body_len != 0 {
                    return Err(malformed(format!(
                        "message {index} is a schema with a body"
                    )));
                }
                continue;
            }
            other => {
                return Err(malformed(format!(
                    "message {index} is a {other:?}, which an IPC stream does not hold"
                )));
            }
        };
        let Some(batch) = batch else {
            return Err(malformed(format!("message {index} has no batch header")));
        };
        let is_record_batch = message.header_type() == MessageHeader::RecordBatch;
        let rows = u64::try_from(batch.length())
            .map_err(|_| malformed(format!("message {index} has a negative row count")))?;
        if is_record_batch {
            rows_in_all = rows_in_all.saturating_add(rows);
            if rows_in_all > limits.max_rows {
                return Err(IpcCheckError::TooLarge(format!(
                    "arrow_ipc holds more than {} rows, the server's limit (server.max_rows); split the input into several requests",
                    limits.max_rows
                )));
            }
        } else if rows > limits.max_rows {
            return Err(IpcCheckError::TooLarge(format!(
                "arrow_ipc holds a dictionary of {rows} values, more than the server's limit of {} (server.max_rows)",
                limits.max_rows
            )));
        }
        for node in batch.nodes().iter().flatten() {
            let length = u64::try_from(node.length())
                .ok()
                .filter(|&l| l <= limits.max_rows)
                .ok_or_else(|| {
                    IpcCheckError::TooLarge(format!(
                        "message {index} has a column of {} values, more than the server's limit of {} rows (server.max_rows)",
                        node.length(),
                        limits.max_rows
                    ))
                })?;
            if node.null_count() < 0 || node.null_count() > node.length() {
                return Err(malformed(format!(
                    "message {index} has a column with {} nulls in {} values",
                    node.null_count(),
                    node.length()
                )));
            }
            size.decoded_bytes = size.decoded_bytes.saturating_add(length.saturating_mul(8));
        }
        let codec = match batch.compression() {
            None => None,
            Some(compression) => {
                let name = match compression.codec() {
                    CompressionType::LZ4_FRAME => "lz4",
                    CompressionType::ZSTD => "zstd",
                    other => {
                        return Err(malformed(format!(
                            "message {index} uses an unknown compression codec ({})",
                            other.0
                        )));
                    }
                };
                if !limits.allow_compressed {
                    return Err(IpcCheckError::CompressionRefused(name));
                }
                lz4 |= compression.codec() == CompressionType::LZ4_FRAME;
                Some(compression.codec())
            }
        };
        for (number, buffer) in batch.buffers().iter().flatten().enumerate() {
            let data = usize::try_from(buffer.offset())
                .ok()
                .zip(usize::try_from(buffer.length()).ok())
                .and_then(|(offset, length)| body.get(offset..offset.checked_add(length)?))
                .ok_or_else(|| {
                    malformed(format!(
                        "message {index}: buffer {number} (offset {}, length {}) lies outside the message's body of {body_len} bytes",
                        buffer.offset(),
                        buffer.length()
                    ))
                })?;
            if let Some(codec) = codec
                && !data.is_empty()
            {
                let claimed = compressed_claim(data).map_err(|e| {
                    malformed(format!("message {index}: compressed buffer {number}: {e}"))
                })?;
                size.decoded_bytes = size.decoded_bytes.saturating_add(claimed);
                if codec == CompressionType::LZ4_FRAME && claimed > 0 {
                    // Where `data` starts in `bytes`: both are slices of it.
                    let start = data.as_ptr() as usize - bytes.as_ptr() as usize;
                    lz4_frames.push(Lz4Frame {
                        message: index,
                        buffer: number,
                        start: start + PREFIX,
                        end: start + data.len(),
                        claimed,
                    });
                }
            }
        }
    }
    if lz4 {
        size.decoded_bytes = size.decoded_bytes.saturating_add(LZ4_DECODER_BYTES);
    }
    Ok(Checked { size, lz4_frames })
}

/// The decompressed length a compressed buffer claims in its prefix (0 when it is stored
/// uncompressed or empty). ZSTD is decompressed by arrow-rs into a buffer of the claimed size,
/// which bounds it; LZ4 frames are proved by [`Checked::prove`].
fn compressed_claim(data: &[u8]) -> Result<u64, String> {
    let prefix: [u8; PREFIX] = data
        .get(..PREFIX)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("{} bytes, too short for its length prefix", data.len()))?;
    let claimed = i64::from_le_bytes(prefix);
    if claimed == -1 || claimed == 0 {
        // Stored uncompressed (a slice of the body), or empty.
        return Ok(0);
    }
    u64::try_from(claimed).map_err(|_| format!("invalid length {claimed}"))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}
