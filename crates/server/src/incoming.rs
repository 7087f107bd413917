//! Accepting connections, bounded: the stream of connections the gRPC server serves.
//!
//! tonic's `serve_with_incoming*` uses sockets as given, so everything a production listener
//! needs happens here:
//! - `TCP_NODELAY` on every socket (without it each response waits ~40 ms for the client's
//!   delayed ACK) and TCP keepalive (dead peers are found and closed);
//! - at most `server.max_connections` open connections, and `server.max_connections_per_address`
//!   from one IP address: one more is accepted and closed at once, so a flood of idle sockets
//!   cannot use up the file descriptors, and a log line says the limit was hit;
//! - the whole handshake within `server.handshake_timeout_seconds`: the TLS handshake (TLS is
//!   terminated here, with rustls, not by tonic) and then the HTTP/2 preface and the client's
//!   SETTINGS frame, read here and replayed to the HTTP/2 server. A connection that sends one
//!   byte and idles (slowloris) holds its slot for the timeout at most, and one that is not
//!   HTTP/2 never reaches the server;
//! - the client certificate's subject, with mutual TLS, travels with each call ([`PeerInfo`]);
//! - accept errors (EMFILE when file descriptors run out, say) back off instead of spinning.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::allocator::Trimmer;

/// How connections are bounded.
#[derive(Clone)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_per_address: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) tcp_keepalive: Duration,
    /// TLS terminated here when set.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for ConnectionLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimits")
            .field("max_connections", &self.max_connections)
            .field("max_per_address", &self.max_per_address)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Raises the process's soft limit of open files to its hard limit, as long-running network
/// servers do: every connection holds a descriptor, and the usual soft default (1 024) is
/// below what `server.max_connections` may allow. Warns when even the hard limit leaves too
/// little room for `max_connections`.
pub(crate) fn raise_open_file_limit(max_connections: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Descriptors besides connections: plugins, files, the runtime's own, and the metrics
        // endpoint's connections.
        const RESERVED: u64 = 64 + crate::telemetry::METRICS_MAX_CONNECTIONS as u64;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
            limit.rlim_cur
        };
        if soft < max_connections as u64 + RESERVED {
            tracing::warn!(
                open_file_limit = soft,
                max_connections,
                "the open file limit leaves too little room for server.max_connections; connections beyond it fail with EMFILE (raise `ulimit -n`, or lower max_connections)"
            );
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = max_connections;
}

/// Repeated warnings (limit hit, accept failing) are logged at most this often, with a count.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What every HTTP/2 connection starts with (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The SETTINGS frame type, which must follow the preface.
const SETTINGS_FRAME: u8 = 0x4;
/// The largest SETTINGS payload read here: six bytes per setting, and a client sends a few.
const MAX_SETTINGS_PAYLOAD: usize = 16 * 1024;

/// Who is at the other end of a call's connection, in the call's extensions.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    pub(crate) remote: SocketAddr,
    /// With mutual TLS, the subject of the client's certificate (`CN=reports,O=…`).
    pub(crate) certificate_subject: Option<Arc<str>>,
}

/// The peer's IP address of a call, from its extensions.
pub(crate) fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions.get::<PeerInfo>().map(|p| p.remote.ip())
}

/// The transport under a connection.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, past its handshake, that holds one of the `max_connections` slots
/// (and one of its address's) until it closes.
#[derive(Debug)]
pub(crate) struct Connection {
    transport: Transport,
    /// The preface and SETTINGS read during the handshake, replayed to the HTTP/2 server first.
    replay: bytes::Bytes,
    info: PeerInfo,
    _slot: OwnedSemaphorePermit,
    _address_slot: AddressSlot,
    /// A closed connection frees its buffers: the trimmer then returns them to the system.
    trimmer: Trimmer,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.trimmer.after_release();
    }
}

impl Connection {
    /// The socket, for inspection.
    #[cfg(test)]
    pub(crate) fn stream(&self) -> &TcpStream {
        match &self.transport {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let take = self.replay.len().min(buf.remaining());
            let replayed = self.replay.split_to(take);
            buf.put_slice(&replayed);
            return Poll::Ready(Ok(()));
        }
        match &mut self.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(stream) => stream.is_write_vectored(),
            Transport::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// The connections accepted on `listener`, and the accept task to abort when the server stops
/// taking connections.
pub(crate) fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    trimmer: Trimmer,
) -> (ReceiverStream<io::Result<Connection>>, JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel(64);
    let task = tokio::spawn(accept_loop(listener, limits, trimmer, ready_tx));
    (ReceiverStream::new(ready_rx), task)
}

/// Counts occurrences of a repeated condition and says when to log it again.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(occurrences since the last log line)` when this one should be logged.
    pub(crate) fn hit(&mut self) -> Option<u64> {
        self.suppressed += 1;
        if self.last.is_some_and(|t| t.elapsed() < WARNING_INTERVAL) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Open connections per IP address.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in its address's count, given back when it closes.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    counts: AddressCounts,
    ip: IpAddr,
}

impl AddressCounts {
    /// A slot for `ip`, unless it already has `limit` connections.
    pub(crate) fn try_take(&self, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    limits: ConnectionLimits,
    trimmer: Trimmer,
    ready: mpsc::Sender<io::Result<Connection>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let addresses = AddressCounts::default();
    let mut backoff = FIRST_BACKOFF;
    let mut at_limit = Throttle::default();
    let mut at_address_limit = Throttle::default();
    let mut failing = Throttle::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = FIRST_BACKOFF;
                accepted
            }
            // The peer gave up before we accepted: nothing to do.
            Err(e) if is_per_connection(&e) => continue,
            Err(error) => {
                if let Some(count) = failing.hit() {
                    tracing::warn!(
                        %error,
                        count,
                        backoff_ms = backoff.as_millis() as u64,
                        "cannot accept connections; backing off (out of file descriptors? raise `ulimit -n` or lower server.max_connections)"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if let Some(count) = at_limit.hit() {
                tracing::warn!(
                    limit = limits.max_connections,
                    refused = count,
                    "connection limit reached; closing new connections until one closes (server.max_connections)"
                );
            }
            drop(stream);
            continue;
        };
        let Some(address_slot) = addresses.try_take(peer.ip(), limits.max_per_address) else {
            if let Some(count) = at_address_limit.hit() {
                tracing::warn!(
                    address = %peer.ip(),
                    limit = limits.max_per_address,
                    refused = count,
                    "connection limit of one address reached; closing its new connections (server.max_connections_per_address)"
                );
            }
            drop(stream);
            continue;
        };
        if let Err(error) = configure(&stream, limits.tcp_keepalive) {
            tracing::debug!(%peer, %error, "cannot configure an accepted socket; closing it");
            continue;
        }
        let accepted = Accepted {
            stream,
            peer,
            slot,
            address_slot,
            trimmer: trimmer.clone(),
        };
        tokio::spawn(handshake(
            accepted,
            limits.tls.clone(),
            limits.handshake_timeout,
            ready.clone(),
        ));
    }
}

/// Errors that concern one connection only, after which accepting goes on at once.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

fn configure(stream: &TcpStream, keepalive: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    socket2::SockRef::from(stream)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(keepalive))
}

/// A socket accepted within the limits, before its handshake.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    address_slot: AddressSlot,
    trimmer: Trimmer,
}

/// Hands the connection to the server once its whole handshake is done (TLS, then the HTTP/2
/// preface and SETTINGS); closes it if that takes longer than `timeout` or is not HTTP/2.
async fn handshake(
    accepted: Accepted,
    tls: Option<tokio_rustls::TlsAcceptor>,
    timeout: Duration,
    ready: mpsc::Sender<io::Result<Connection>>,
) {
    let peer = accepted.peer;
    let Accepted {
        stream,
        slot,
        address_slot,
        trimmer,
        ..
    } = accepted;
    let handshake = async {
        let (mut transport, certificate_subject) = match tls {
            None => (Transport::Plain(stream), None),
            Some(acceptor) => {
                let tls = acceptor.accept(stream).await?;
                let subject = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| certificate_subject(cert.as_ref()));
                (Transport::Tls(Box::new(tls)), subject)
            }
        };
        let replay = read_preface(&mut transport).await?;
        io::Result::Ok((transport, replay, certificate_subject))
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok((transport, replay, certificate_subject))) => {
            let _ = ready
                .send(Ok(Connection {
                    transport,
                    replay,
                    info: PeerInfo {
                        remote: peer,
                        certificate_subject,
                    },
                    _slot: slot,
                    _address_slot: address_slot,
                    trimmer,
                }))
                .await;
        }
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "closed a connection whose handshake failed");
        }
        Err(_) => tracing::debug!(
            %peer,
            timeout_ms = timeout.as_millis() as u64,
            "closed a connection that did not complete its handshake within the handshake timeout (server.handshake_timeout_seconds)"
        ),
    }
}

/// Reads the HTTP/2 connection preface and the SETTINGS frame that must follow it, and returns
/// them to be replayed.
async fn read_preface(transport: &mut Transport) -> io::Result<bytes::Bytes> {
    let mut head = [0u8; PREFACE.len() + 9];
    match transport {
        Transport::Plain(stream) => stream.read_exact(&mut head).await?,
        Transport::Tls(stream) => stream.read_exact(&mut head).await?,
    };
    let (preface, frame) = head.split_at(PREFACE.len());
    if preface != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface (gRPC needs HTTP/2; is the client speaking TLS to a plain-text server, or HTTP/1?)",
        ));
    }
    let length = usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]);
    if frame[3] != SETTINGS_FRAME || length > MAX_SETTINGS_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the HTTP/2 preface is not followed by a SETTINGS frame",
        ));
    }
    let mut replay = Vec::with_capacity(head.len() + length);
    replay.extend_from_slice(&head);
    replay.resize(head.len() + length, 0);
    match transport {
        Transport::Plain(stream) => stream.read_exact(&mut replay[head.len()..]).await?,
        Transport::Tls(stream) => stream.read_exact(&mut replay[head.len()..]).await?,
    };
    Ok(bytes::Bytes::from(replay))
}

/// The subject of a DER certificate, as `CN=…,O=…`.
fn certificate_subject(der: &[u8]) -> Option<Arc<str>> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Arc::from(certificate.subject().to_string()))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;
    use tokio_stream::StreamExt as _;

    use super::*;

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_per_address: max_connections,
            handshake_timeout: Duration::from_millis(300),
            tcp_keepalive: Duration::from_secs(30),
            tls: None,
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// The HTTP/2 preface and an empty SETTINGS frame, as every client starts.
    fn hello() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, SETTINGS_FRAME, 0, 0, 0, 0, 0]);
        bytes
    }

    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_keepalive_and_replay_the_preface() {
        let (listener, addr) = listener().await;
        let (mut incoming, task) = incoming(listener, limits(4), Trimmer::default());
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&hello()).await.unwrap();
        client.write_all(b"more").await.unwrap();
        let mut connection = incoming.next().await.unwrap().unwrap();
        assert!(connection.stream().nodelay().unwrap());
        assert!(
            socket2::SockRef::from(connection.stream())
                .keepalive()
                .unwrap()
        );
        let mut expected = hello();
        expected.extend_from_slice(b"more");
        let mut read = vec![0u8; expected.len()];
        connection.read_exact(&mut read).await.unwrap();
        assert_eq!(read, expected);
        task.abort();
    }

    #[tokio::test]
    async fn silent_and_slow_connections_time_out_and_the_limit_holds() {
        let (listener, addr) = listener().await;
        let (mut incoming, task) = incoming(listener, limits(2), Trimmer::default());
        // A silent connection and one that sends a byte of the preface and stalls (slowloris)
        // take both slots; a third is closed at once.
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"P").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = refused.read(&mut byte).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // After the handshake timeout both are gone, neither having reached the server, and a
        // speaking client gets in.
        tokio::time::sleep(Duration::from_millis(400)).await;
        for mut closed in [silent, slow] {
            let read = closed.read(&mut byte).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&hello()).await.unwrap();
        let connection = tokio::time::timeout(Duration::from_secs(2), incoming.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            connection.stream().peer_addr().unwrap(),
            client.local_addr().unwrap()
        );
        task.abort();
    }

    #[tokio::test]
    async fn what_is_not_http2_never_reaches_the_server() {
        let (listener, addr) = listener().await;
        let (mut incoming, task) = incoming(listener, limits(4), Trimmer::default());
        let mut http1 = TcpStream::connect(addr).await.unwrap();
        http1
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\n\r\n")
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), http1.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let nothing = tokio::time::timeout(Duration::from_millis(100), incoming.next()).await;
        assert!(nothing.is_err(), "an HTTP/1 connection reached the server");
        task.abort();
    }

    #[tokio::test]
    async fn one_address_holds_at_most_its_share() {
        let (listener, addr) = listener().await;
        let mut limits = limits(8);
        limits.max_per_address = 2;
        let (_incoming, task) = incoming(listener, limits, Trimmer::default());
        let _held = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), third.read(&mut byte))
            .await
            .expect("the third connection of one address is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        task.abort();
    }
}
