//! Requests are bounded before their memory is spent: a stream's header is checked before its
//! rows are uploaded, streamed input shares a budget, group counts and response sizes are
//! limited, and malformed or oversize messages get the codes gRPC clients expect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mittari_e2e::{Server, bundled_plugins};
use mittari_proto::v1 as pb;
use pb::column::Values;
use pb::compute_stream_request::Message;
use tonic::Code;
use tonic_types::StatusExt;

fn start(env: &[(&str, &str)]) -> Server {
    let plugins = bundled_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Server::start_with(&plugins, env)
}

fn scores(values: Vec<i64>) -> pb::Column {
    mittari_e2e::int_column("score", values)
}

fn regions(values: Vec<String>) -> pb::Column {
    pb::Column {
        name: "region".into(),
        values: Some(Values::StringValues(pb::StringValues { values })),
        null_mask: vec![],
    }
}

/// The status of a call that must fail; a success is reported without its (large) body.
/// NPS of one promoter in each of `groups` regions, grouped by region.
fn nps_by_region(groups: usize) -> pb::ComputeRequest {
    pb::ComputeRequest {
        metric: "nps".into(),
        parameters: HashMap::new(),
        input: Some(pb::Table {
            columns: vec![
                scores(vec![9; groups]),
                regions((0..groups).map(|i| format!("r{i}")).collect()),
            ],
            ..Default::default()
        }),
        group_by: vec!["region".into()],
        ..Default::default()
    }
}

/// A refusal with `code` whose message names the configuration `key` that bounds it.
fn check_refusal(status: &tonic::Status, code: Code, key: &str) {
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(status.message().contains(key), "{}", status.message());
}

fn refused<T>(outcome: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match outcome {
        Ok(_) => panic!("the call succeeded"),
        Err(status) => status,
    }
}

fn header(metric: &str, parameters: HashMap<String, pb::Value>) -> pb::ComputeStreamRequest {
    pb::ComputeStreamRequest {
        message: Some(Message::Header(pb::ComputeStreamHeader {
            metric: metric.into(),
            parameters,
            group_by: vec![],
            schema: vec![pb::ColumnSchema {
                name: "score".into(),
                r#type: pb::DataType::Int64.into(),
            }],
            ..Default::default()
        })),
    }
}

/// A stream whose header is refused gets its answer at once, while the client still holds
/// the rest of the upload: nothing after the header is read.
#[tokio::test]
async fn a_stream_header_is_checked_before_its_rows() {
    let server = start(&[]);
    let mut client = server.client().await;
    let confidence = pb::Value {
        kind: Some(pb::value::Kind::DoubleValue(7.0)),
    };
    let cases = [
        (header("no_such_metric", HashMap::new()), Code::NotFound),
        (
            header(
                "nps",
                HashMap::from([("confidence".to_owned(), confidence)]),
            ),
            Code::InvalidArgument,
        ),
    ];
    for (first, code) in cases {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender.send(first).await.unwrap();
        let started = Instant::now();
        let status = tokio::time::timeout(
            Duration::from_secs(10),
            client.compute_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)),
        )
        .await
        .expect("answered without waiting for the rows")
        .unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(sender);
    }
}

#[tokio::test]
async fn streamed_input_beyond_the_memory_budget_is_refused() {
    let server = start(&[
        ("MITTARI__SERVER__MAX_INPUT_MEMORY_BYTES", "262144"),
        ("MITTARI__SERVER__MAX_MESSAGE_BYTES", "262144"),
    ]);
    let mut client = server.client().await;
    let chunk = pb::ComputeStreamRequest {
        message: Some(Message::Chunk(pb::Table {
            columns: vec![scores(vec![9; 100_000])],
            ..Default::default()
        })),
    };
    let status = refused(
        client
            .compute_stream(tokio_stream::iter(vec![
                header("nps", HashMap::new()),
                chunk,
            ]))
            .await,
    );
    check_refusal(
        &status,
        Code::ResourceExhausted,
        "server.max_input_memory_bytes",
    );
    // More than the whole budget can never fit: no RetryInfo (tests/hostile.rs shows the
    // refusal with RetryInfo while other calls hold the budget).
    assert!(status.get_details_retry_info().is_none());
}

/// After a large request the server's resident memory returns near where it was: an idle
/// server does not keep the high-water mark of its largest request. It keeps freed large
/// buffers for the next request to reuse while requests keep coming (the allocator's
/// retained blocks), and returns them a few seconds after the last.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_of_a_large_request_is_returned() {
    let server = start(&[]);
    let mut client = server.client().await;
    let idle = server.resident_bytes();
    /// Resident bytes above `idle` once they fall under 24 MiB, or after 10 s.
    async fn settled(server: &Server, idle: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let retained = server.resident_bytes().saturating_sub(idle);
            if retained < 24 << 20 || Instant::now() > deadline {
                return retained;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    const CHUNKS: usize = 16;
    const CHUNK_ROWS: usize = 500_000;
    let chunks = (0..CHUNKS).map(|i| pb::ComputeStreamRequest {
        message: Some(Message::Chunk(pb::Table {
            columns: vec![scores(vec![(i % 11) as i64; CHUNK_ROWS])],
            ..Default::default()
        })),
    });
    let response = client
        .compute_stream(tokio_stream::iter(
            std::iter::once(header("nps", HashMap::new())).chain(chunks),
        ))
        .await
        .expect("nps over 8 000 000 streamed rows");
    assert_eq!(response.into_inner().rows, (CHUNKS * CHUNK_ROWS) as u64);
    // 8 000 000 scores are 64 MB as Arrow and more in flight; what stays must be well below.
    let retained = settled(&server, idle).await;
    assert!(
        retained < 24 << 20,
        "{} MiB stay resident 10 s after the request (idle: {} MiB)",
        retained >> 20,
        idle >> 20
    );

    // Many small results (one per group) are freed into the middle of the allocator's heaps;
    // an idle moment after the request they are returned too.
    const GROUPS: usize = 40_000;
    let response = client
        .max_decoding_message_size(64 << 20)
        .compute(nps_by_region(GROUPS))
        .await
        .expect("nps over 40 000 groups");
    assert_eq!(response.into_inner().grouped.unwrap().rows.len(), GROUPS);
    let retained = settled(&server, idle).await;
    assert!(
        retained < 24 << 20,
        "{} MiB stay resident 10 s after a 40 000-group request (idle: {} MiB)",
        retained >> 20,
        idle >> 20
    );
}

#[tokio::test]
async fn groups_and_responses_are_bounded() {
    let server = start(&[
        ("MITTARI__SERVER__MAX_GROUPS", "1000"),
        ("MITTARI__SERVER__MAX_MESSAGE_BYTES", "16384"),
        ("MITTARI__SERVER__MAX_STREAM_BYTES", "16384"),
    ]);
    let mut client = server.client().await;
    let grouped = nps_by_region;
    // More groups than allowed: refused before any is computed, naming the key.
    let status = refused(client.compute(grouped(1001)).await);
    check_refusal(&status, Code::InvalidArgument, "server.max_groups");
    // Allowed groups whose results exceed a message: RESOURCE_EXHAUSTED, not a transport error.
    // (Before that, more rows or text than allowed is refused by its own key.)
    let status = refused(client.compute(grouped(1000)).await);
    check_refusal(&status, Code::ResourceExhausted, "server.max_message_bytes");
    // Refused once the groups computed so far pass the limit, not after all 1000 (about 110
    // bytes each, some 6.7 times the limit): the size it reports is just past the limit.
    let reported: usize = status
        .message()
        .strip_prefix("the result needs at least ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or_else(|| panic!("no size in {:?}", status.message()));
    assert!(
        (16384..2 * 16384).contains(&reported),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn rows_and_text_per_request_are_bounded() {
    let server = start(&[
        ("MITTARI__SERVER__MAX_ROWS", "1000"),
        ("MITTARI__SERVER__MAX_STRING_BYTES", "4000"),
    ]);
    let mut client = server.client().await;
    let survey = |rows: usize, id_bytes: usize| pb::ComputeRequest {
        metric: "nps".into(),
        parameters: HashMap::new(),
        input: Some(pb::Table {
            columns: vec![
                scores(vec![9; rows]),
                regions((0..rows).map(|i| format!("{i:0id_bytes$}")).collect()),
            ],
            ..Default::default()
        }),
        group_by: vec![],
        ..Default::default()
    };
    for (rows, id_bytes, key) in [
        (1001, 1, "server.max_rows"),
        (500, 10, "server.max_string_bytes"),
    ] {
        let status = refused(client.compute(survey(rows, id_bytes)).await);
        check_refusal(&status, Code::InvalidArgument, key);
    }
    assert!(client.compute(survey(1000, 4)).await.is_ok());
}

/// Messages tonic refuses before a handler runs get the codes gRPC clients expect.
#[tokio::test]
async fn oversize_and_malformed_messages_get_grpc_codes() {
    let server = start(&[("MITTARI__SERVER__MAX_MESSAGE_BYTES", "65536")]);
    let mut client = server.client().await.max_encoding_message_size(1 << 24);
    let big = pb::ComputeRequest {
        metric: "nps".into(),
        parameters: HashMap::new(),
        input: Some(pb::Table {
            columns: vec![scores(vec![9; 100_000])],
            ..Default::default()
        }),
        group_by: vec![],
        ..Default::default()
    };
    let status = refused(client.compute(big).await);
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );

    // Bytes that are not a ComputeRequest: field 1 (metric) with a length past the end.
    let mut raw = tonic::client::Grpc::new(server.channel().await);
    raw.ready().await.unwrap();
    let status = raw
        .unary(
            tonic::Request::new(vec![0x0a, 0xff, 0x01, b'x']),
            http::uri::PathAndQuery::from_static("/mittari.v1.MetricService/Compute"),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
}

/// Sends bytes as they are; decodes nothing (the calls here fail).
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf as _;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
