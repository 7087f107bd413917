//! Hostile bytes against the real server, each case from the security probe of Step 4b: the
//! server runs with an address-space limit (an allocation the input claimed would abort it and
//! fail the test), every case ends in a clear, correctly coded error or a correct answer, and
//! afterwards the server is alive and serves an honest client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use mittari_e2e::raw_h2::{self, Connection};
use mittari_e2e::{Server, borrowed, bundled_plugins, nps_request, raise_open_file_limit};
use mittari_proto::v1 as pb;
use pb::compute_stream_request::Message;
use tonic::Code;

/// The server's address space: ample for every honest case here, far below what the forged
/// claims would allocate.
const ADDRESS_SPACE: u64 = 3 << 30;

fn start(env: &[(&str, &str)]) -> Server {
    Server::start_limited(&borrowed(&bundled_plugins()), env, Some(ADDRESS_SPACE))
}

/// The server is alive and answers an honest request.
async fn assert_healthy(server: &mut Server) {
    assert!(server.is_running(), "the server died:\n{}", tail(server));
    let mut client = server.client().await;
    let response = client
        .compute(nps_request(vec![10, 9, 0]))
        .await
        .unwrap_or_else(|s| panic!("an honest request failed: {s:?}\n{}", tail(server)));
    assert!(response.into_inner().results.is_some());
}

fn tail(server: &Server) -> String {
    let logs = server.logs();
    logs[logs.len().saturating_sub(20)..].join("\n")
}

fn expect_refusal<T: std::fmt::Debug>(
    outcome: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    fragment: &str,
) {
    let status = outcome.expect_err("refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(fragment),
        "{fragment:?} not in {:?}",
        status.message()
    );
}

fn scores_batch(rows: usize) -> RecordBatch {
    let scores: ArrayRef = Arc::new(Int64Array::from_iter_values(
        (0..rows as i64).map(|i| i % 11),
    ));
    RecordBatch::try_from_iter([("score", scores)]).unwrap()
}

fn ipc(batch: &RecordBatch, compression: Option<CompressionType>) -> Vec<u8> {
    let options = IpcWriteOptions::default()
        .try_with_compression(compression)
        .unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        StreamWriter::try_new_with_options(&mut bytes, &batch.schema(), options).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    bytes
}

/// `bytes` with the compressed buffer whose prefix claims `honest` decompressed bytes made to
/// claim `forged` instead.
fn forge_claim(mut bytes: Vec<u8>, honest: u64, forged: u64) -> Vec<u8> {
    let needle = honest.to_le_bytes();
    let at = bytes
        .windows(8)
        .rposition(|w| w == needle)
        .expect("the buffer's length prefix");
    bytes[at..at + 8].copy_from_slice(&forged.to_le_bytes());
    bytes
}

fn arrow_request(metric: &str, bytes: Vec<u8>, group_by: &[&str]) -> pb::ComputeRequest {
    pb::ComputeRequest {
        metric: metric.into(),
        input: Some(pb::Table {
            arrow_ipc: bytes.into(),
            ..Default::default()
        }),
        group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
        ..Default::default()
    }
}

fn arrow_stream(bytes: Vec<u8>) -> Vec<pb::ComputeStreamRequest> {
    vec![
        pb::ComputeStreamRequest {
            message: Some(Message::Header(pb::ComputeStreamHeader {
                metric: "nps".into(),
                ..Default::default()
            })),
        },
        pb::ComputeStreamRequest {
            message: Some(Message::Chunk(pb::Table {
                arrow_ipc: bytes.into(),
                ..Default::default()
            })),
        },
    ]
}

const FORGED: u64 = 1 << 44;

#[tokio::test]
async fn forged_compressed_ipc_lengths_never_allocate() {
    let honest = scores_batch(4096);
    let lz4 = ipc(&honest, Some(CompressionType::LZ4_FRAME));
    let zstd = ipc(&honest, Some(CompressionType::ZSTD));
    let forged_lz4 = forge_claim(lz4.clone(), 4096 * 8, FORGED);
    let forged_zstd = forge_claim(zstd.clone(), 4096 * 8, FORGED);
    assert!(forged_lz4.len() < 1024, "{}", forged_lz4.len());

    // By default compressed bodies are refused, forged or not, unary and streamed.
    let mut server = start(&[]);
    let mut client = server.client().await;
    for bytes in [&lz4, &forged_lz4, &forged_zstd] {
        expect_refusal(
            client
                .compute(arrow_request("nps", bytes.clone(), &[]))
                .await,
            Code::InvalidArgument,
            "server.allow_compressed_arrow",
        );
        expect_refusal(
            client
                .compute_stream(tokio_stream::iter(arrow_stream(bytes.clone())))
                .await,
            Code::InvalidArgument,
            "server.allow_compressed_arrow",
        );
    }
    assert_healthy(&mut server).await;
    drop(server);

    // Allowed, honest compressed input computes; a forged claim of 16 TiB is more than the
    // budget could ever give, LZ4 or ZSTD, unary or streamed; an LZ4 frame that claims less
    // than it holds (arrow-rs would decompress it to its true size) is proved false before
    // arrow-rs sees it.
    let mut server = start(&[("MITTARI__SERVER__ALLOW_COMPRESSED_ARROW", "true")]);
    let mut client = server.client().await;
    for bytes in [&lz4, &zstd] {
        let response = client
            .compute(arrow_request("nps", bytes.clone(), &[]))
            .await
            .expect("honest compressed input")
            .into_inner();
        assert_eq!(response.rows, 4096);
    }
    for forged in [forged_lz4, forged_zstd] {
        expect_refusal(
            client
                .compute(arrow_request("nps", forged.clone(), &[]))
                .await,
            Code::ResourceExhausted,
            "needs 175921",
        );
        expect_refusal(
            client
                .compute_stream(tokio_stream::iter(arrow_stream(forged)))
                .await,
            Code::ResourceExhausted,
            "server.max_input_memory_bytes_per_caller",
        );
    }
    let understated = forge_claim(lz4.clone(), 4096 * 8, 100);
    expect_refusal(
        client.compute(arrow_request("nps", understated, &[])).await,
        Code::InvalidArgument,
        "claims 100 bytes decompressed but holds more",
    );
    assert_healthy(&mut server).await;
}

#[tokio::test]
async fn decompression_is_reserved_before_it_happens() {
    // One million zeros compress about 250:1; their 8 MB do not fit a 4 MiB budget.
    let zeros: ArrayRef = Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(
        0,
        1 << 20,
    )));
    let batch = RecordBatch::try_from_iter([("score", zeros)]).unwrap();
    let bytes = ipc(&batch, Some(CompressionType::LZ4_FRAME));
    assert!(bytes.len() < 200_000, "{}", bytes.len());
    let mut server = start(&[
        ("MITTARI__SERVER__ALLOW_COMPRESSED_ARROW", "true"),
        ("MITTARI__SERVER__MAX_INPUT_MEMORY_BYTES", "4194304"),
        ("MITTARI__SERVER__MAX_MESSAGE_BYTES", "4194304"),
    ]);
    let mut client = server.client().await;
    expect_refusal(
        client.compute(arrow_request("nps", bytes, &[])).await,
        Code::ResourceExhausted,
        "the decoded Arrow input needs",
    );
    assert_healthy(&mut server).await;
}

#[tokio::test]
async fn dictionary_expansion_counts_against_the_text_limit_before_it_is_built() {
    // One million keys into a single 1 000-byte region name: 12 MB sent, 1 GB once expanded.
    let rows = 1 << 20;
    let name = "r".repeat(1000);
    let keys = arrow_array::Int32Array::from_iter_values(std::iter::repeat_n(0, rows));
    let values = Arc::new(StringArray::from(vec![name.as_str()]));
    let regions: ArrayRef = Arc::new(DictionaryArray::try_new(keys, values).unwrap());
    let scores: ArrayRef = Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(9, rows)));
    let batch = RecordBatch::try_from_iter([("score", scores), ("region", regions)]).unwrap();
    let bytes = ipc(&batch, None);
    let mut server = start(&[("MITTARI__SERVER__MAX_STRING_BYTES", "100000000")]);
    let mut client = server.client().await;
    assert_healthy(&mut server).await;
    let peak_before = server.peak_resident_bytes();
    expect_refusal(
        client
            .compute(arrow_request("nps", bytes, &["region"]))
            .await,
        Code::InvalidArgument,
        "server.max_string_bytes",
    );
    let peak = server.peak_resident_bytes();
    eprintln!("peak resident memory {peak_before} -> {peak} bytes");
    // The request is 12 MB; expanding it would have taken 1 GB.
    assert!(
        peak < peak_before + (200 << 20),
        "the dictionary was expanded: peak {peak_before} -> {peak} bytes"
    );
    assert_healthy(&mut server).await;
}

#[tokio::test]
async fn twenty_million_empty_strings_are_refused_before_prost_decodes_them() {
    let strings = pb::Column {
        name: "comment".into(),
        values: Some(pb::column::Values::StringValues(pb::StringValues {
            values: vec![String::new(); 20_000_000],
        })),
        ..Default::default()
    };
    let request = pb::ComputeRequest {
        metric: "nps".into(),
        input: Some(pb::Table {
            columns: vec![mittari_e2e::int_column("score", vec![9]), strings],
            ..Default::default()
        }),
        ..Default::default()
    };
    let message_bytes = prost::Message::encoded_len(&request) as u64;
    let mut server = start(&[]);
    let mut client = server.client().await;
    assert_healthy(&mut server).await;
    let peak_before = server.peak_resident_bytes();
    // 40 MB on the wire would be about 0.5 to 1 GB of Rust strings: more than one caller's
    // share of the input memory (512 MiB by default), so refused before decoding.
    expect_refusal(
        client.compute(request).await,
        Code::ResourceExhausted,
        "the decoded request message needs",
    );
    let peak = server.peak_resident_bytes();
    eprintln!(
        "a {message_bytes}-byte message of empty strings: peak resident memory {peak_before} -> {peak} bytes ({:.1} x the message)",
        (peak - peak_before) as f64 / message_bytes as f64
    );
    assert!(
        peak - peak_before < 3 * message_bytes,
        "peak {peak_before} -> {peak} bytes for a {message_bytes}-byte message"
    );
    assert_healthy(&mut server).await;
}

#[tokio::test]
async fn a_request_shape_is_bounded_before_any_per_name_work() {
    let mut server = start(&[]);
    let mut client = server.client().await;
    let cpu_before = server.cpu_seconds();
    for _ in 0..2 {
        let mut request = nps_request(vec![9]);
        request.group_by = (0..120_000).map(|i| format!("c{i}")).collect();
        expect_refusal(
            client.compute(request).await,
            Code::InvalidArgument,
            "120000 group-by columns; a request may have at most 32",
        );
    }
    // 100 000 columns the metric does not know: refused by their count, in a short message.
    let mut request = nps_request(vec![9]);
    let table = request.input.as_mut().unwrap();
    for i in 0..100_000 {
        table
            .columns
            .push(mittari_e2e::int_column(&format!("x{i}"), vec![1]));
    }
    let status = client.compute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 1000, "{}", status.message().len());
    // Within the count, a list of columns in a message is capped.
    let mut request = nps_request(vec![9]);
    let table = request.input.as_mut().unwrap();
    table.columns.clear();
    for i in 0..1000 {
        table
            .columns
            .push(mittari_e2e::int_column(&format!("x{i}"), vec![1]));
    }
    let status = client.compute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("and 980 more"),
        "{}",
        status.message()
    );
    let cpu = server.cpu_seconds() - cpu_before;
    assert!(cpu < 5.0, "the refusals took {cpu:.1} s of server CPU");
    assert_healthy(&mut server).await;
}

#[tokio::test]
async fn slowloris_sockets_keep_no_client_out_beyond_the_handshake_timeout() {
    raise_open_file_limit(2600);
    let timeout = 2;
    let mut server = start(&[("MITTARI__SERVER__HANDSHAKE_TIMEOUT_SECONDS", "2")]);
    // 512 sockets that each send one byte of the preface and then idle.
    let mut idle = Vec::new();
    for _ in 0..512 {
        let Ok(mut socket) = std::net::TcpStream::connect(server.addr) else {
            continue;
        };
        let _ = std::io::Write::write_all(&mut socket, b"P");
        idle.push(socket);
    }
    let started = Instant::now();
    let honest = async {
        loop {
            let attempt = async {
                let channel = tonic::transport::Channel::from_shared(server.url())
                    .unwrap()
                    .connect_timeout(Duration::from_millis(500))
                    .connect()
                    .await?;
                let mut client =
                    mittari_proto::v1::metric_service_client::MetricServiceClient::new(channel);
                client
                    .compute(nps_request(vec![9]))
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })?;
                Ok::<_, Box<dyn std::error::Error>>(())
            };
            if tokio::time::timeout(Duration::from_secs(1), attempt)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(timeout + 3), honest)
        .await
        .expect("an honest client got in within the handshake timeout");
    eprintln!(
        "an honest client got in {:.2} s after 512 slowloris sockets",
        started.elapsed().as_secs_f64()
    );
    drop(idle);
    assert_healthy(&mut server).await;
}

#[tokio::test]
async fn stalled_uploads_give_their_memory_back() {
    let mut server = start(&[
        ("MITTARI__SERVER__MAX_INPUT_MEMORY_BYTES", "134217728"),
        // Long enough that the first stalled upload still holds its memory when the large
        // one is first tried on a loaded machine (1.4 s after it, more when conversions wait).
        ("MITTARI__SERVER__UPLOAD_IDLE_TIMEOUT_SECONDS", "3"),
    ]);
    let header = pb::ComputeStreamRequest {
        message: Some(Message::Header(pb::ComputeStreamHeader {
            metric: "nps".into(),
            schema: vec![pb::ColumnSchema {
                name: "score".into(),
                r#type: pb::DataType::Int64 as i32,
            }],
            ..Default::default()
        })),
    };
    let chunk = |rows: usize| pb::ComputeStreamRequest {
        message: Some(Message::Chunk(pb::Table {
            columns: vec![mittari_e2e::int_column("score", vec![9; rows])],
            ..Default::default()
        })),
    };
    // Three uploads send 2.5 M rows (20 MB as Arrow) each and pause, never ending: 61 MB of
    // the 128 MiB budget held. While the previous one's chunk is still being converted (its
    // message and its columns both held) there may not be room for the next: that one is
    // refused at once, with a time to retry, and is sent again; a stalled one stays open.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            sender.send(header.clone()).await.unwrap();
            sender.send(chunk(2_500_000)).await.unwrap();
            let mut client = server.client().await;
            let call = tokio::spawn(async move {
                client
                    .compute_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
                    .await
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            if !call.is_finished() {
                stalled.push((sender, call));
                break;
            }
            let status = call.await.unwrap().unwrap_err();
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(
                attempts < 10,
                "a stalled upload was refused {attempts} times: {status:?}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // An upload of 4 M rows (about 96 MB while its message is converted) does not fit beside
    // them; their pause ends them within the idle timeout, and then it does.
    let started = Instant::now();
    let mut client = server.client().await;
    let mut refused = 0;
    loop {
        let outcome = client
            .compute_stream(tokio_stream::iter(vec![header.clone(), chunk(4_000_000)]))
            .await;
        match outcome {
            Ok(response) => {
                assert_eq!(response.into_inner().rows, 4_000_000);
                assert!(refused > 0, "the stalled uploads held nothing");
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    tonic_types::StatusExt::get_details_retry_info(&status).is_some(),
                    "a refusal while others hold the budget says when to retry"
                );
                refused += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(7),
                    "still refused after {:?}: {}",
                    started.elapsed(),
                    status.message()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // Each stalled upload ends by the idle timeout, or (on a loaded machine, its chunk reaching
    // the budget while another's was still being converted) was refused before it held
    // anything, with a time to retry. The budget holds two of them whatever the timing.
    let mut timed_out = 0;
    for (sender, call) in stalled {
        let status = call.await.unwrap().unwrap_err();
        match status.code() {
            Code::DeadlineExceeded => {
                assert!(
                    status.message().contains("upload_idle_timeout_seconds"),
                    "{}",
                    status.message()
                );
                timed_out += 1;
            }
            Code::ResourceExhausted => assert!(
                tonic_types::StatusExt::get_details_retry_info(&status).is_some(),
                "{status:?}"
            ),
            _ => panic!("a stalled upload ended otherwise: {status:?}"),
        }
        drop(sender);
    }
    assert!(
        timed_out >= 2,
        "only {timed_out} stalled uploads held memory until their timeout"
    );
    assert_healthy(&mut server).await;
}

/// A server with a token, so that calls without one are refused before any service.
fn start_with_token() -> Server {
    let (_token, config) =
        mittari_server::new_token("probe", &[mittari_server::Scope::Compute]).expect("a token");
    let config = format!("[server]\nmetrics_listen = \"127.0.0.1:0\"\n\n{config}");
    Server::start_with_config_limited(
        &borrowed(&bundled_plugins()),
        &config,
        Some(ADDRESS_SPACE),
        None,
    )
}

fn scrape(server: &Server) -> String {
    let addr = server.metrics_addr();
    let mut socket = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut socket,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut socket, &mut text).unwrap();
    text
}

#[tokio::test]
async fn unauthenticated_paths_never_grow_or_break_the_metrics() {
    let server = start_with_token();
    let mut connection = Connection::open(server.addr);
    let mut stream = 1u32;
    let mut paths: Vec<Vec<u8>> = (0..2000)
        .map(|i| format!("/random/{i}").into_bytes())
        .collect();
    paths.push(b"/inj\",metric=\"nps\",code=\"Ok".to_vec());
    paths.push(format!("/{}", "x".repeat(15_000)).into_bytes());
    for path in &paths {
        let block = raw_h2::grpc_headers(path, &[]);
        connection.send(&raw_h2::frame(
            raw_h2::HEADERS,
            raw_h2::END_HEADERS | raw_h2::END_STREAM,
            stream,
            &block,
        ));
        stream += 2;
        if stream % 200 == 1 {
            connection.drain(Duration::from_millis(20));
        }
    }
    connection.drain(Duration::from_millis(500));
    let text = scrape(&server);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let series = body
        .lines()
        .filter(|l| l.starts_with("mittari_requests_total{"))
        .count();
    assert!(series <= 3, "{series} series:\n{body}");
    assert!(!body.contains("inj"), "{body}");
    assert!(body.len() < 64 * 1024, "{} bytes", body.len());
    // Every sample line parses: name{labels} value, with quoted, escaped label values.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        if let Some(labels) = series.split_once('{').map(|(_, l)| l) {
            assert!(labels.ends_with('}'), "{line}");
            assert_eq!(labels.matches('"').count() % 2, 0, "{line}");
        }
    }
    // The refusals were logged with a count, not one line each.
    let refusals = server
        .logs()
        .iter()
        .filter(|l| l.contains("refused a call"))
        .count();
    assert!(refusals < 10, "{refusals} log lines for 2 002 refusals");
    drop(connection);
}

#[tokio::test]
async fn idle_sockets_on_the_metrics_endpoint_leave_the_service_alone() {
    raise_open_file_limit(2600);
    // With 1 024 descriptors, 2 000 idle sockets held by the metrics endpoint would leave the
    // server none for its gRPC clients.
    let mut server = Server::start_with_config_limited(
        &borrowed(&bundled_plugins()),
        "[server]\nmetrics_listen = \"127.0.0.1:0\"\nmax_connections = 256\n",
        Some(ADDRESS_SPACE),
        Some(1024),
    );
    let addr = server.metrics_addr();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(socket) = std::net::TcpStream::connect(addr) {
            idle.push(socket);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The gRPC service still computes, on fresh connections...
    for _ in 0..3 {
        assert_healthy(&mut server).await;
    }
    // ...and the endpoint answers again once the idle sockets are gone.
    drop(idle);
    let text = scrape(&server);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !server
            .logs()
            .iter()
            .any(|l| l.contains("Too many open files")),
        "{}",
        tail(&server)
    );
}

fn list_metrics_call(stream: u32, end_stream: bool) -> Vec<u8> {
    let block = raw_h2::grpc_headers(b"/mittari.v1.MetricService/ListMetrics", &[]);
    let mut bytes = raw_h2::frame(raw_h2::HEADERS, raw_h2::END_HEADERS, stream, &block);
    bytes.extend(raw_h2::frame(
        raw_h2::DATA,
        if end_stream { raw_h2::END_STREAM } else { 0 },
        stream,
        &raw_h2::grpc_message(&[]),
    ));
    bytes
}

#[tokio::test]
async fn http2_floods_end_with_the_server_healthy() {
    let mut server = start(&[]);
    let resident_before = server.anonymous_resident_bytes();

    // 10 000 streams left open on one connection: beyond max_concurrent_streams they are
    // refused, and other clients are served meanwhile.
    let mut open = Connection::open(server.addr);
    let mut frames = Vec::new();
    for i in 0..10_000u32 {
        frames.extend(list_metrics_call(2 * i + 1, false));
    }
    let _ = open.try_send(&frames);
    assert_healthy(&mut server).await;

    // Rapid reset: each stream opened and reset at once.
    let mut reset = Connection::open(server.addr);
    let mut frames = Vec::new();
    for i in 0..10_000u32 {
        let stream = 2 * i + 1;
        frames.extend(list_metrics_call(stream, false));
        frames.extend(raw_h2::frame(
            raw_h2::RST_STREAM,
            0,
            stream,
            &8u32.to_be_bytes(),
        ));
    }
    let _ = reset.try_send(&frames);
    let (_, closed) = reset.drain(Duration::from_secs(2));
    assert!(closed, "a rapid-reset flood keeps its connection");
    assert_healthy(&mut server).await;

    // CONTINUATION flood: a header block that never ends.
    let mut continuation = Connection::open(server.addr);
    let block = raw_h2::grpc_headers(b"/mittari.v1.MetricService/ListMetrics", &[]);
    continuation.send(&raw_h2::frame(raw_h2::HEADERS, 0, 1, &block));
    let filler = raw_h2::header_block(&[("x-filler", &[b'a'; 8000])]);
    let mut sent = 0usize;
    for _ in 0..10_000 {
        if !continuation.try_send(&raw_h2::frame(raw_h2::CONTINUATION, 0, 1, &filler)) {
            break;
        }
        sent += filler.len();
    }
    let (_, closed) = continuation.drain(Duration::from_secs(2));
    assert!(
        closed,
        "a CONTINUATION flood of {sent} bytes keeps its connection"
    );
    assert_healthy(&mut server).await;

    // SETTINGS and PING floods from a client that never reads the acknowledgements.
    let mut pings = Connection::open(server.addr);
    let mut frames = Vec::new();
    for i in 0..50_000u64 {
        frames.extend(raw_h2::frame(raw_h2::PING, 0, 0, &i.to_be_bytes()));
        frames.extend(raw_h2::frame(raw_h2::SETTINGS, 0, 0, &[]));
    }
    for _ in 0..4 {
        if !pings.try_send(&frames) {
            break;
        }
    }
    assert_healthy(&mut server).await;

    // A client that asks for a large result (a row per customer) and never reads it: the
    // answer waits on flow control, and other clients are served.
    let mut never_reads = Connection::open(server.addr);
    let customers = 5000;
    let mut request = nps_request((0..customers).map(|i| i % 11).collect());
    request.group_by = vec!["customer".into()];
    request.input.as_mut().unwrap().columns.push(pb::Column {
        name: "customer".into(),
        values: Some(pb::column::Values::StringValues(pb::StringValues {
            values: (0..customers).map(|i| format!("c{i}")).collect(),
        })),
        ..Default::default()
    });
    let body = raw_h2::grpc_message(&prost::Message::encode_to_vec(&request));
    assert!(body.len() < 60_000, "{} bytes", body.len());
    let block = raw_h2::grpc_headers(b"/mittari.v1.MetricService/Compute", &[]);
    let mut frames = raw_h2::frame(raw_h2::HEADERS, raw_h2::END_HEADERS, 1, &block);
    let chunks: Vec<&[u8]> = body.chunks(16 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() {
            raw_h2::END_STREAM
        } else {
            0
        };
        frames.extend(raw_h2::frame(raw_h2::DATA, flags, 1, chunk));
    }
    never_reads.send(&frames);
    assert_healthy(&mut server).await;

    let resident_after = server.anonymous_resident_bytes();
    eprintln!("resident memory before the floods {resident_before} bytes, after {resident_after}");
    assert!(
        resident_after < resident_before + (512 << 20),
        "the floods grew the server from {resident_before} to {resident_after} bytes"
    );
    drop((open, pings, never_reads));
    assert_healthy(&mut server).await;
}
