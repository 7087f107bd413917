//! One memory budget for every request's input, unary and streamed: bytes are reserved
//! before they are allocated, and a request that does not fit is refused with
//! RESOURCE_EXHAUSTED instead of growing the process.
//!
//! Two things reserve from it:
//! - [`BudgetLayer`] wraps each call's request body. It reads the gRPC framing as the bytes
//!   arrive and reserves a message's declared length when its 5-byte header comes in, because
//!   tonic reserves that much for the message at once; the reservation is released when the
//!   message is complete (the service then holds its decoded form, which it reserves itself).
//!   A body that sends nothing for `server.upload_idle_timeout_seconds` is ended, so a stalled
//!   upload cannot hold its share of the budget.
//! - The metric service reserves each input's decoded size (Arrow arrays, decompressed IPC
//!   buffers) before it converts or decodes it, and holds it until the computation is done.
//!
//! Each caller (token name; anonymous callers by address) may hold at most
//! `server.max_input_memory_bytes_per_caller` of the budget, so one caller's stalled or
//! oversized uploads cannot lock the others out.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf as _;
use http_body::Frame;
use tonic::Status;

use crate::auth::Caller;
use crate::status::ServiceError;

/// The server's input memory budget.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: u64,
    per_caller: u64,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: u64,
    by_caller: HashMap<Arc<str>, u64>,
}

impl MemoryBudget {
    pub(crate) fn new(total: u64, per_caller: u64) -> Self {
        MemoryBudget {
            inner: Arc::new(Inner {
                total,
                per_caller: per_caller.min(total),
                held: Mutex::new(Held::default()),
            }),
        }
    }

    /// An empty reservation for `caller`, which grows as the request needs memory.
    pub(crate) fn reservation(&self, caller: &str) -> Reservation {
        Reservation {
            budget: Arc::clone(&self.inner),
            caller: Arc::from(caller),
            bytes: 0,
            decoded_messages: 0,
        }
    }

    /// Bytes reserved by all requests now.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// Bytes one request holds of the budget, returned when it is dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Inner>,
    caller: Arc<str>,
    bytes: u64,
    /// Of `bytes`, what decoded protobuf messages hold until the service has converted them.
    decoded_messages: u64,
}

impl Reservation {
    /// Reserves `bytes` more for `what`, or refuses without reserving anything.
    pub(crate) fn grow(&mut self, bytes: u64, what: &str) -> Result<(), ServiceError> {
        if bytes == 0 {
            return Ok(());
        }
        let budget = &self.budget;
        // More than the caller's share can never fit: no use retrying.
        if bytes > budget.per_caller {
            return Err(ServiceError::InputTooLarge(format!(
                "{what} needs {bytes} bytes of input memory, more than one caller may hold ({} bytes, server.max_input_memory_bytes_per_caller of server.max_input_memory_bytes); send it in smaller requests",
                budget.per_caller
            )));
        }
        let mut held = budget.held.lock().unwrap_or_else(PoisonError::into_inner);
        let caller_held = held.by_caller.get(&self.caller).copied().unwrap_or(0);
        let refuse = |scope: &str, limit: u64, key: &str| {
            Err(ServiceError::Busy(format!(
                "{what} needs {bytes} bytes of input memory, more than {scope} has free ({limit} bytes in all, {key}); send smaller messages or fewer requests at once, or raise {key}"
            )))
        };
        if held.total.saturating_add(bytes) > budget.total {
            return refuse("the server", budget.total, "server.max_input_memory_bytes");
        }
        if caller_held.saturating_add(bytes) > budget.per_caller {
            return refuse(
                "this caller's share",
                budget.per_caller,
                "server.max_input_memory_bytes_per_caller",
            );
        }
        held.total += bytes;
        *held.by_caller.entry(Arc::clone(&self.caller)).or_insert(0) += bytes;
        self.bytes += bytes;
        Ok(())
    }

    /// Returns `bytes` of what this reservation holds.
    fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        if bytes == 0 {
            return;
        }
        self.bytes -= bytes;
        let mut held = self
            .budget
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(bytes);
        if let Some(caller) = held.by_caller.get_mut(&self.caller) {
            *caller = caller.saturating_sub(bytes);
            if *caller == 0 {
                held.by_caller.remove(&self.caller);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// A call's reservation, shared by its request body and its handler (found in the request's
/// extensions); released when the last of them is done.
#[derive(Debug, Clone)]
pub(crate) struct CallBudget(Arc<Mutex<Reservation>>);

impl CallBudget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reservation> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `bytes` more for the rest of the call.
    pub(crate) fn grow(&self, bytes: u64, what: &str) -> Result<(), ServiceError> {
        self.lock().grow(bytes, what)
    }

    /// Reserves what prost is about to allocate for a decoded request message (see
    /// `mittari_proto::bounded`), until [`CallBudget::release_decoded`].
    fn reserve_decoded(&self, bytes: u64) -> Result<(), ServiceError> {
        let mut reservation = self.lock();
        reservation.grow(bytes, "the decoded request message")?;
        reservation.decoded_messages += bytes;
        Ok(())
    }

    /// The call's input is done with and its answer is encoded: only the answer's `bytes` stay
    /// reserved, until the response has been sent (or its connection dropped), so answers a
    /// client does not read count against the budget too.
    pub(crate) fn hold_only(&self, bytes: u64, what: &str) -> Result<(), ServiceError> {
        let mut reservation = self.lock();
        let held = reservation.bytes;
        reservation.shrink(held);
        reservation.decoded_messages = 0;
        reservation.grow(bytes, what)
    }

    /// The service has converted the decoded messages and dropped them: their reservation is
    /// returned.
    pub(crate) fn release_decoded(&self) {
        let mut reservation = self.lock();
        let decoded = std::mem::take(&mut reservation.decoded_messages);
        reservation.shrink(decoded);
    }

    /// The budget of `request`, as [`BudgetLayer`] attached it; a call that bypassed the layer
    /// (unit tests) gets a reservation of its own.
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> CallBudget {
        request
            .extensions()
            .get::<CallBudget>()
            .cloned()
            .unwrap_or_else(|| {
                CallBudget(Arc::new(Mutex::new(
                    MemoryBudget::new(u64::MAX, u64::MAX).reservation("unbudgeted"),
                )))
            })
    }
}

/// Wraps every call's request body in [`BudgetedBody`], under the auth layer (so the caller
/// is known and unauthenticated calls never reserve anything).
#[derive(Debug, Clone)]
pub(crate) struct BudgetLayer {
    budget: MemoryBudget,
    idle_timeout: Duration,
}

impl BudgetLayer {
    pub(crate) fn new(budget: MemoryBudget, idle_timeout: Duration) -> Self {
        BudgetLayer {
            budget,
            idle_timeout,
        }
    }
}

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Budgeted {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Budgeted<S> {
    inner: S,
    layer: BudgetLayer,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Budgeted<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let caller = caller_key(&request);
        let budget = CallBudget(Arc::new(Mutex::new(self.layer.budget.reservation(&caller))));
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(budget.clone());
        let body = tonic::body::Body::new(BudgetedBody {
            inner: body,
            budget: budget.clone(),
            framing: Framing::default(),
            idle_timeout: self.layer.idle_timeout,
            idle: Box::pin(tokio::time::sleep(self.layer.idle_timeout)),
            waiting: false,
        });
        let response = self.inner.call(http::Request::from_parts(parts, body));
        let reserve = {
            let budget = budget.clone();
            mittari_proto::bounded::DecodeReserve(Arc::new(move |bytes| {
                budget
                    .reserve_decoded(bytes)
                    .map_err(|e| crate::status::to_status(&e))
            }))
        };
        // The request's messages are decoded while this future is polled: the codec finds the
        // call's budget here.
        let response = mittari_proto::bounded::DECODE_RESERVE.scope(reserve, response);
        Box::pin(async move {
            // What the handler still holds (its encoded answer) is held until the response
            // body is sent or dropped.
            let response = response.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(HeldBody {
                    inner: body,
                    _budget: budget,
                })
            }))
        })
    }
}

/// Whose share a call counts against: its token's name, or for anonymous calls the peer's
/// address.
fn caller_key<B>(request: &http::Request<B>) -> String {
    match request.extensions().get::<Caller>() {
        Some(caller) if caller.name() != "anonymous" => format!("token {}", caller.name()),
        _ => match crate::incoming::peer_ip(request.extensions()) {
            Some(ip) => format!("anonymous {ip}"),
            None => "anonymous".to_owned(),
        },
    }
}

/// Where the body is in the gRPC framing: a 5-byte header (compression flag, length), then
/// that many bytes of message.
#[derive(Debug, Default)]
struct Framing {
    header: [u8; 5],
    header_got: usize,
    /// Message bytes still to come; `None` while reading a header.
    remaining: Option<u64>,
    /// Bytes reserved for the message being received.
    reserved: u64,
}

/// A request body that reserves each gRPC message's declared size from the call's budget
/// before the message reaches tonic, and ends when the client stalls.
struct BudgetedBody {
    inner: tonic::body::Body,
    budget: CallBudget,
    framing: Framing,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Whether the last poll found no data: the idle time runs only while the body waits for
    /// the client, not while the service is busy and does not poll it.
    waiting: bool,
}

impl BudgetedBody {
    /// Walks the framing over `data`, reserving each message when its header completes and
    /// releasing it when its last byte has passed.
    fn account(&mut self, mut data: &[u8]) -> Result<(), ServiceError> {
        while !data.is_empty() {
            match self.framing.remaining {
                None => {
                    let framing = &mut self.framing;
                    let take = (5 - framing.header_got).min(data.len());
                    framing.header[framing.header_got..framing.header_got + take]
                        .copy_from_slice(&data[..take]);
                    framing.header_got += take;
                    data = &data[take..];
                    if framing.header_got == 5 {
                        framing.header_got = 0;
                        let length = u64::from(u32::from_be_bytes([
                            framing.header[1],
                            framing.header[2],
                            framing.header[3],
                            framing.header[4],
                        ]));
                        let size = length + 5;
                        self.budget.grow(size, "a request message")?;
                        self.framing.reserved = size;
                        self.framing.remaining = Some(length);
                        if length == 0 {
                            self.complete();
                        }
                    }
                }
                Some(remaining) => {
                    let take = remaining.min(data.len() as u64);
                    data = &data[take as usize..];
                    let left = remaining - take;
                    self.framing.remaining = Some(left);
                    if left == 0 {
                        self.complete();
                    }
                }
            }
        }
        Ok(())
    }

    /// A message has fully arrived: tonic decodes it now, and the service reserves its decoded
    /// form, so its bytes on the wire are released.
    fn complete(&mut self) {
        self.framing.remaining = None;
        let reserved = std::mem::take(&mut self.framing.reserved);
        self.budget.lock().shrink(reserved);
    }
}

impl http_body::Body for BudgetedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                }
                if this.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "the request stalled: no data for {} s (server.upload_idle_timeout_seconds); send the rest of the input without pausing",
                        this.idle_timeout.as_secs()
                    )))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    let chunk = data.chunk();
                    // A frame's data is one contiguous chunk (hyper's `Bytes`).
                    if let Err(error) = this.account(chunk) {
                        return Poll::Ready(Some(Err(crate::status::to_status(&error))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its call's reservation until it is dropped.
struct HeldBody {
    inner: tonic::body::Body,
    _budget: CallBudget,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_respect_the_total_and_each_callers_share() {
        let budget = MemoryBudget::new(100, 60);
        let mut a = budget.reservation("a");
        let mut b = budget.reservation("b");
        let never = a.grow(61, "x").unwrap_err();
        assert!(matches!(never, ServiceError::InputTooLarge(_)), "{never}");
        a.grow(50, "x").unwrap();
        assert!(
            matches!(a.grow(20, "x"), Err(ServiceError::Busy(_))),
            "a's share is 60"
        );
        b.grow(50, "x").unwrap();
        let refused = b.grow(1, "y").unwrap_err().to_string();
        assert!(
            refused.contains("server.max_input_memory_bytes"),
            "{refused}"
        );
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 50);
        b.grow(10, "x").unwrap();
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    fn body(budget: &MemoryBudget) -> BudgetedBody {
        BudgetedBody {
            inner: tonic::body::Body::empty(),
            budget: CallBudget(Arc::new(Mutex::new(budget.reservation("t")))),
            framing: Framing::default(),
            idle_timeout: Duration::from_secs(1),
            idle: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            waiting: false,
        }
    }

    fn message(length: u32) -> Vec<u8> {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, length as usize));
        bytes
    }

    #[tokio::test]
    async fn a_message_is_reserved_at_its_header_and_released_when_complete() {
        let budget = MemoryBudget::new(1000, 1000);
        let mut body = body(&budget);
        let bytes = message(100);
        // The header arrives split, then part of the message.
        body.account(&bytes[..3]).unwrap();
        assert_eq!(budget.held(), 0);
        body.account(&bytes[3..20]).unwrap();
        assert_eq!(budget.held(), 105);
        body.account(&bytes[20..]).unwrap();
        assert_eq!(budget.held(), 0);
        // Two messages and an empty one in one frame.
        let mut frame = message(10);
        frame.extend(message(0));
        frame.extend(message(20));
        body.account(&frame).unwrap();
        assert_eq!(budget.held(), 0);
    }

    /// A request body whose client sends nothing.
    struct Silent;

    impl http_body::Body for Silent {
        type Data = bytes::Bytes;
        type Error = Status;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    fn poll_once(body: &mut BudgetedBody) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        http_body::Body::poll_frame(Pin::new(body), &mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn only_time_spent_waiting_for_the_client_counts_as_idle() {
        let budget = MemoryBudget::new(1000, 1000);
        let mut body = body(&budget);
        body.inner = tonic::body::Body::new(Silent);
        // The service is busy for 5 s and does not poll: that is not the client's idleness.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(poll_once(&mut body).is_pending());
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(poll_once(&mut body).is_pending());
        // A second of waiting in all: the upload has stalled.
        tokio::time::advance(Duration::from_millis(200)).await;
        match poll_once(&mut body) {
            Poll::Ready(Some(Err(status))) => {
                assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
                assert!(status.message().contains("upload_idle_timeout_seconds"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_header_claiming_more_than_the_budget_is_refused_before_tonic_reserves_it() {
        let budget = MemoryBudget::new(1000, 1000);
        let mut body = body(&budget);
        let mut header = vec![0u8];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        let refused = body.account(&header).unwrap_err();
        assert!(
            matches!(refused, ServiceError::InputTooLarge(_)),
            "{refused}"
        );
        assert_eq!(budget.held(), 0);
    }
}
