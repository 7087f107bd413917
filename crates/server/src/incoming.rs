//! Accepting connections, bounded: the stream of connections the gRPC server serves.
//!
//! tonic's `serve_with_incoming*` uses sockets as given, so everything a production listener
//! needs happens here:
//! - `TCP_NODELAY` on every socket (without it each response waits ~40 ms for the client's
//!   delayed ACK) and TCP keepalive (dead peers are found and closed);
//! - at most `server.max_connections` open connections: one more is accepted and closed at
//!   once, so a flood of idle sockets cannot use up the file descriptors and lock out every
//!   client, and a log line says the limit was hit;
//! - a handshake timeout: a connection that sends nothing within
//!   `server.handshake_timeout_seconds` is closed before it reaches the HTTP/2 server;
//! - accept errors (EMFILE when file descriptors run out, say) back off instead of spinning.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::allocator::Trimmer;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) tcp_keepalive: Duration,
}

/// Raises the process's soft limit of open files to its hard limit, as long-running network
/// servers do: every connection holds a descriptor, and the usual soft default (1 024) is
/// below what `server.max_connections` may allow. Warns when even the hard limit leaves too
/// little room for `max_connections`.
pub(crate) fn raise_open_file_limit(max_connections: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Descriptors besides connections: plugins, files, the runtime's own.
        const RESERVED: u64 = 64;
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

/// An accepted connection that holds one of the `max_connections` slots until it closes.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
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
        &self.stream
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
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
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(occurrences since the last log line)` when this one should be logged.
    fn hit(&mut self) -> Option<u64> {
        self.suppressed += 1;
        if self.last.is_some_and(|t| t.elapsed() < WARNING_INTERVAL) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

async fn accept_loop(
    listener: TcpListener,
    limits: ConnectionLimits,
    trimmer: Trimmer,
    ready: mpsc::Sender<io::Result<Connection>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = FIRST_BACKOFF;
    let mut at_limit = Throttle::default();
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
        if let Err(error) = configure(&stream, limits.tcp_keepalive) {
            tracing::debug!(%peer, %error, "cannot configure an accepted socket; closing it");
            continue;
        }
        tokio::spawn(handshake(
            stream,
            peer,
            slot,
            limits.handshake_timeout,
            trimmer.clone(),
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

/// Hands the connection to the server once its first bytes arrive; closes it if none do in time.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    timeout: Duration,
    trimmer: Trimmer,
    ready: mpsc::Sender<io::Result<Connection>>,
) {
    // `readable()` may report readiness spuriously (a new socket starts out "ready"); peeking
    // waits for a byte that really arrived.
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => {
            let _ = ready
                .send(Ok(Connection {
                    stream,
                    _slot: slot,
                    trimmer,
                }))
                .await;
        }
        Ok(Ok(0)) => tracing::debug!(%peer, "connection closed before its handshake"),
        Ok(Err(error)) => tracing::debug!(%peer, %error, "connection failed before its handshake"),
        Err(_) => tracing::debug!(
            %peer,
            timeout_ms = timeout.as_millis() as u64,
            "closed a connection that sent nothing within the handshake timeout"
        ),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;
    use tokio_stream::StreamExt as _;

    use super::*;

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            handshake_timeout: Duration::from_millis(300),
            tcp_keepalive: Duration::from_secs(30),
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_keepalive() {
        let (listener, addr) = listener().await;
        let (mut incoming, task) = incoming(listener, limits(4), Trimmer::default());
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"PRI").await.unwrap();
        let connection = incoming.next().await.unwrap().unwrap();
        assert!(connection.stream().nodelay().unwrap());
        assert!(
            socket2::SockRef::from(connection.stream())
                .keepalive()
                .unwrap()
        );
        task.abort();
    }

    #[tokio::test]
    async fn silent_connections_time_out_and_the_limit_holds() {
        let (listener, addr) = listener().await;
        let (mut incoming, task) = incoming(listener, limits(2), Trimmer::default());
        // Two silent connections take both slots; a third is closed at once.
        let _silent: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut refused, &mut byte).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // After the handshake timeout the silent ones are gone, none of them having reached the
        // server, and a speaking client gets in.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"PRI").await.unwrap();
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
}
