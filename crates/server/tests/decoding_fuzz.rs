//! A bounded fuzzer over the request decoding path, run by `cargo test`: Arrow IPC streams
//! (uncompressed, LZ4, ZSTD, with dictionaries) mutated at random, arbitrary and mutated
//! protobuf `ComputeRequest`s and `ComputeStreamRequest`s. Every input must come back as a
//! value or an error (no panic escapes, no abort), and a counting allocator checks the memory
//! each decode takes against what the server reserves for it first:
//!
//! - IPC: at most twice the input (misaligned buffers are copied) plus what
//!   `ipc_check` said decoding needs (an LZ4 frame decoder's own buffers included), which the
//!   server reserves from its budget;
//! - protobuf: at most the estimate `mittari_proto::bounded` gives before decoding.
//!
//! The seed corpus holds the Step 4b probe's cases: a forged 2^44 LZ4 length, a forged ZSTD
//! length, a zero bomb, a dictionary of one long value, 20 000 empty strings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use arrow_array::{ArrayRef, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use mittari_proto::bounded::{Shape, decoded_size};
use mittari_proto::v1 as pb;
use mittari_server::convert;
use mittari_server::ipc_check::IpcLimits;
use proptest::prelude::*;

/// Counts the bytes each thread has allocated and not freed, and the peak since a reset.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: delegates to the system allocator; the counters are plain thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `work` and returns its result and the most memory it held at once beyond what was
/// live before (on this thread).
fn measured<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let value = work();
    let peak = PEAK.with(Cell::get);
    (value, (peak - base).max(0) as u64)
}

/// The most decoding may reserve in these tests.
const BUDGET: u64 = 64 << 20;
const SLACK: u64 = 1 << 20;

fn ipc(batch: &RecordBatch, compression: Option<CompressionType>) -> Vec<u8> {
    let options = IpcWriteOptions::default()
        .try_with_compression(compression)
        .unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        StreamWriter::try_new_with_options(&mut bytes, &batch.schema(), options).unwrap();
    writer.write(batch).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    bytes
}

fn forge(mut bytes: Vec<u8>, honest: u64, forged: u64) -> Vec<u8> {
    if let Some(at) = bytes.windows(8).position(|w| w == honest.to_le_bytes()) {
        bytes[at..at + 8].copy_from_slice(&forged.to_le_bytes());
    }
    bytes
}

/// Valid IPC streams, and the probe's hostile ones.
fn ipc_seeds() -> Vec<Vec<u8>> {
    let scores: ArrayRef = Arc::new(Int64Array::from_iter_values((0..512).map(|i| i % 11)));
    let regions: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..512).map(|i| format!("region-{}", i % 7)),
    ));
    let keys = Int32Array::from_iter_values((0..512).map(|i| i % 3));
    let names = Arc::new(StringArray::from(vec!["north", "south", &"x".repeat(1000)]));
    let dictionary: ArrayRef = Arc::new(DictionaryArray::try_new(keys, names).unwrap());
    let batch = RecordBatch::try_from_iter([
        ("score", scores),
        ("region", regions),
        ("segment", dictionary),
    ])
    .unwrap();
    let zeros: ArrayRef = Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(
        0,
        1 << 16,
    )));
    let zeros = RecordBatch::try_from_iter([("score", zeros)]).unwrap();
    let lz4 = ipc(&batch, Some(CompressionType::LZ4_FRAME));
    let zstd = ipc(&batch, Some(CompressionType::ZSTD));
    vec![
        ipc(&batch, None),
        lz4.clone(),
        zstd.clone(),
        forge(lz4, 512 * 8, 1 << 44),
        forge(zstd, 512 * 8, 1 << 44),
        ipc(&zeros, Some(CompressionType::LZ4_FRAME)),
    ]
}

/// Panics inside arrow-rs are caught and become errors; their message is printed without a
/// backtrace, whose symbolization (tens of MB) would otherwise count as the decode's memory.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
}

/// Decodes `bytes` as the server does, checking the memory it took.
fn decode_ipc_within_bounds(bytes: Vec<u8>) {
    quiet_panics();
    let len = bytes.len() as u64;
    let limits = IpcLimits {
        max_rows: 1 << 20,
        allow_compressed: true,
    };
    let mut reserved = 0u64;
    let (result, peak) = measured(|| {
        let result = convert::ipc_to_batches(bytes.into(), &limits, |size| {
            if size.decoded_bytes > BUDGET {
                return Err(mittari_server::ServiceError::Busy("over budget".into()));
            }
            reserved = size.decoded_bytes;
            Ok(())
        });
        // Dropped inside the measurement: only the peak matters.
        result.is_ok()
    });
    let bound = 2 * len + reserved + SLACK;
    assert!(
        peak <= bound,
        "decoding {len} bytes (ok: {result}) took {peak} bytes at peak, above {bound} (reserved {reserved})"
    );
}

#[test]
fn the_probes_ipc_seeds_decode_within_bounds() {
    for seed in ipc_seeds() {
        decode_ipc_within_bounds(seed);
    }
}

/// A mutation of a byte string: flip bytes, overwrite 8 bytes with a chosen length, cut, or
/// splice.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Length { at: usize, value: i64 },
    Truncate { at: usize },
    Duplicate { from: usize, len: usize, to: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let lengths = prop_oneof![
        Just(-1i64),
        Just(0),
        Just(1 << 44),
        Just(i64::MAX),
        Just(i64::MIN),
        0i64..1 << 24,
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (any::<usize>(), lengths).prop_map(|(at, value)| Mutation::Length { at, value }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..64, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *mutation {
            Mutation::Flip { at, xor } => bytes[at % n] ^= xor,
            Mutation::Length { at, value } => {
                // Aligned to 8, where IPC lengths and prefixes sit.
                let at = (at % n) & !7;
                if at + 8 <= n {
                    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % n),
            Mutation::Duplicate { from, len, to } => {
                let from = from % n;
                let piece: Vec<u8> = bytes[from..(from + len).min(n)].to_vec();
                let to = to % n;
                bytes.splice(to..to, piece);
            }
        }
    }
    bytes
}

fn request_strategy() -> impl Strategy<Value = pb::ComputeRequest> {
    let column = prop_oneof![
        proptest::collection::vec(any::<i64>(), 0..200)
            .prop_map(|values| pb::column::Values::Int64Values(pb::Int64Values { values })),
        proptest::collection::vec(0i64..3, 0..2000)
            .prop_map(|values| pb::column::Values::Int64Values(pb::Int64Values { values })),
        proptest::collection::vec(any::<f64>(), 0..200)
            .prop_map(|values| pb::column::Values::DoubleValues(pb::DoubleValues { values })),
        proptest::collection::vec(any::<bool>(), 0..500)
            .prop_map(|values| pb::column::Values::BoolValues(pb::BoolValues { values })),
        proptest::collection::vec(".{0,3}", 0..3000)
            .prop_map(|values| pb::column::Values::StringValues(pb::StringValues { values })),
    ];
    let column = (
        "[a-z]{1,8}",
        column,
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(name, values, null_mask)| pb::Column {
            name,
            values: Some(values),
            null_mask,
        });
    let value = prop_oneof![
        any::<i64>().prop_map(pb::value::Kind::Int64Value),
        any::<f64>().prop_map(pb::value::Kind::DoubleValue),
        ".{0,6}".prop_map(pb::value::Kind::StringValue),
        any::<bool>().prop_map(pb::value::Kind::BoolValue),
    ]
    .prop_map(|kind| pb::Value { kind: Some(kind) });
    let columns = proptest::collection::vec(column, 0..5);
    let table = columns.clone().prop_map(|columns| pb::Table {
        columns,
        ..Default::default()
    });
    (
        "[a-z_]{0,12}",
        columns,
        proptest::collection::vec("[a-z]{0,6}", 0..5),
        proptest::collection::hash_map("[a-z]{0,4}", value, 0..200),
        proptest::collection::hash_map("[a-z]{0,4}", table, 0..3),
    )
        .prop_map(
            |(metric, columns, group_by, parameters, tables)| pb::ComputeRequest {
                metric,
                parameters,
                input: Some(pb::Table {
                    columns,
                    ..Default::default()
                }),
                group_by,
                tables,
                ..Default::default()
            },
        )
}

/// Decodes `bytes` as `M` the way the server's codec does, after estimating it; the decode
/// never takes more than the estimate. Decodable tables then convert or are refused.
fn decode_within_estimate<M: prost::Message + Default>(bytes: &[u8], shape: Shape) -> Option<M> {
    let estimate = decoded_size(bytes, shape);
    // tonic hands prost a buffer whose `bytes` fields (Arrow IPC) are slices of it, not copies.
    let received = bytes::Bytes::copy_from_slice(bytes);
    let (decoded, peak) = measured(|| M::decode(received).ok());
    assert!(
        peak <= estimate + 4096,
        "decoding {} bytes took {peak} bytes, above the estimate of {estimate}",
        bytes.len()
    );
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_ipc_decodes_or_is_refused_within_bounds(
        seed in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let seeds = ipc_seeds();
        let bytes = mutate(seeds[seed % seeds.len()].clone(), &mutations);
        decode_ipc_within_bounds(bytes);
    }

    #[test]
    fn requests_decode_within_their_estimate(request in request_strategy()) {
        let bytes = prost::Message::encode_to_vec(&request);
        let decoded: pb::ComputeRequest =
            decode_within_estimate(&bytes, Shape::ComputeRequest).expect("a valid message");
        let _ = convert::table_to_batch(decoded.input.unwrap_or_default());
        let chunk = pb::ComputeStreamRequest {
            message: Some(pb::compute_stream_request::Message::Chunk(
                request.input.clone().unwrap_or_default(),
            )),
        };
        let bytes = prost::Message::encode_to_vec(&chunk);
        let _: Option<pb::ComputeStreamRequest> =
            decode_within_estimate(&bytes, Shape::ComputeStreamRequest);
    }

    #[test]
    fn mutated_requests_never_panic_and_stay_within_their_estimate(
        request in request_strategy(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = mutate(prost::Message::encode_to_vec(&request), &mutations);
        if let Some(decoded) = decode_within_estimate::<pb::ComputeRequest>(&bytes, Shape::ComputeRequest) {
            let _ = convert::table_to_batch(decoded.input.unwrap_or_default());
        }
        let _: Option<pb::ComputeStreamRequest> =
            decode_within_estimate(&bytes, Shape::ComputeStreamRequest);
    }
}

#[test]
fn empty_strings_decode_within_their_estimate() {
    let request = pb::ComputeRequest {
        metric: "nps".into(),
        input: Some(empty_strings_table(20_000)),
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&request);
    let _: pb::ComputeRequest = decode_within_estimate(&bytes, Shape::ComputeRequest).unwrap();
}

/// Named tables and parameters are maps: their entries cost a hash table's buckets, and a named
/// table's columns cost what the input's do (the estimate once counted a named table as its
/// bytes: 20 000 empty strings took 24 times what was reserved).
#[test]
fn named_tables_and_parameters_decode_within_their_estimate() {
    let empty_strings = empty_strings_table(20_000);
    let request = pb::ComputeRequest {
        metric: "nps".into(),
        parameters: (0..5_000)
            .map(|i| {
                let value = pb::Value {
                    kind: Some(pb::value::Kind::BoolValue(true)),
                };
                (i.to_string(), value)
            })
            .collect(),
        tables: [("survey".to_string(), empty_strings.clone())].into(),
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&request);
    let _: pb::ComputeRequest = decode_within_estimate(&bytes, Shape::ComputeRequest).unwrap();
    let header = pb::ComputeStreamRequest {
        message: Some(pb::compute_stream_request::Message::Header(
            pb::ComputeStreamHeader {
                metric: "nps".into(),
                tables: [("survey".to_string(), empty_strings)].into(),
                ..Default::default()
            },
        )),
    };
    let bytes = prost::Message::encode_to_vec(&header);
    let _: pb::ComputeStreamRequest =
        decode_within_estimate(&bytes, Shape::ComputeStreamRequest).unwrap();
}

fn empty_strings_table(rows: usize) -> pb::Table {
    pb::Table {
        columns: vec![pb::Column {
            name: "comment".into(),
            values: Some(pb::column::Values::StringValues(pb::StringValues {
                values: vec![String::new(); rows],
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    while value >= 0x80 {
        bytes.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
    bytes
}

/// prost checks a nested length against the whole buffer, not its parent's: a `tables` entry
/// claiming 4 bytes holds a table running to the end, which prost decodes (20 000 empty
/// strings) before it finds the entry overran. The fuzzer found this shape in CI.
#[test]
fn a_table_running_past_its_entry_is_counted_as_prost_decodes_it() {
    let table = prost::Message::encode_to_vec(&empty_strings_table(20_000));
    let length = varint(table.len() as u64);
    let mut bytes = vec![0x32, 1 + length.len() as u8, 0x12];
    bytes.extend_from_slice(&length);
    bytes.extend_from_slice(&table);
    let decoded: Option<pb::ComputeRequest> = decode_within_estimate(&bytes, Shape::ComputeRequest);
    assert!(
        decoded.is_none(),
        "prost refuses the overrun, after decoding the table"
    );
}

/// prost skips an unknown field's group and decodes what follows: the rows after it count.
#[test]
fn rows_after_an_unknown_group_are_counted() {
    let request = pb::ComputeRequest {
        metric: "nps".into(),
        input: Some(empty_strings_table(20_000)),
        ..Default::default()
    };
    // Field 15: a group start (wire type 3), a varint inside, its end (wire type 4).
    let mut bytes = vec![15 << 3 | 3, 1 << 3, 7, 15 << 3 | 4];
    bytes.extend(prost::Message::encode_to_vec(&request));
    let decoded: pb::ComputeRequest =
        decode_within_estimate(&bytes, Shape::ComputeRequest).expect("prost skips the group");
    assert_eq!(decoded.metric, "nps");
}

/// prost reads a map field's entry whatever wire type its key gives (a fixed32 key here): the
/// entries count as parameters, not as the four bytes a fixed32 would skip.
#[test]
fn map_entries_under_any_wire_type_are_counted() {
    let mut bytes = Vec::new();
    for i in 0..2_000u32 {
        let entry = prost::Message::encode_to_vec(&pb::ComputeRequest {
            parameters: [(i.to_string(), pb::Value::default())].into(),
            ..Default::default()
        });
        // The entry's key, field 2, as wire type 5.
        assert_eq!(entry[0], 2 << 3 | 2);
        bytes.push(2 << 3 | 5);
        bytes.extend_from_slice(&entry[1..]);
    }
    let decoded: pb::ComputeRequest =
        decode_within_estimate(&bytes, Shape::ComputeRequest).expect("prost takes the entries");
    assert_eq!(decoded.parameters.len(), 2_000);
}

/// A one-byte group-by name takes a 24-byte `String` in a doubling `Vec` and 8 bytes of heap
/// (a `Vec<u8>` reserves at least 8): the estimate once counted its bytes instead, which one
/// name past a power of two (the `Vec` just doubled) showed.
#[test]
fn short_group_by_names_decode_within_their_estimate() {
    let request = pb::ComputeRequest {
        metric: "nps".into(),
        group_by: vec!["r".to_string(); (1 << 16) + 1],
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&request);
    let _: pb::ComputeRequest = decode_within_estimate(&bytes, Shape::ComputeRequest).unwrap();
}
