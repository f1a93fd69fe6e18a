//! What one client may hold of the server: time to send a request, and a
//! share of the connections the process can keep open.
//!
//! actix bounds the time to send a request's head (`client_request_timeout`)
//! but not its body: a client that sends the head and then a byte now and
//! then holds its connection, its buffers and a file descriptor for as long
//! as it likes. [`body_deadline`] gives the body the same time the head has;
//! [`connection_budget`] keeps the connections the server accepts below what
//! the open-files limit allows, so that it never fails to accept, open a
//! database connection or read a file because slow clients took every
//! descriptor; and [`PeerConnections`] keeps one client address from taking
//! all of them, so that the server goes on answering everyone else. Behind
//! a trusted reverse proxy (`SHOP__SERVER__TRUSTED_PROXIES`) the client is
//! the address the proxy forwards, and what it holds is its requests in
//! flight (each one a connection the proxy holds for it).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::EitherBody;
use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_core::Stream;
use shared_kernel::web::client::{ClientAddress, TrustedProxies, forwarded_for};
use shared_kernel::web::problem::Problem;

/// Descriptors kept back from connections: database connections, the
/// SQLite file and its journal, the listener, the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The connections this process accepts at once: `wanted`, or fewer when the
/// open-files limit (raised first to its hard limit) cannot hold them and
/// what the process needs besides.
pub fn connection_budget(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-files limit; keeping SHOP__SERVER__MAX_CONNECTIONS as set");
            return wanted;
        }
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    if wanted > fits {
        tracing::warn!(
            wanted,
            open_files_limit = limit,
            accepted = fits.max(1),
            "SHOP__SERVER__MAX_CONNECTIONS is more than the open-files limit allows; lowered (raise `ulimit -n` or LimitNOFILE= to keep it)"
        );
    }
    wanted.min(fits).max(1)
}

/// Ends a request body that has not arrived within `timeout` of the head:
/// whoever reads it gets an `io::ErrorKind::TimedOut` payload error (which
/// [`shared_kernel::web::extract::body_problem`] answers 408 `request_timeout`), and
/// the connection, whose unread body cannot be skipped, is closed.
pub async fn body_deadline(
    timeout: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let payload = req.take_payload();
    // A request without a body (most GETs) has nothing to wait for: no timer.
    if matches!(payload, Payload::None) {
        req.set_payload(payload);
        return next.call(req).await;
    }
    let limited = Deadline {
        body: payload,
        timer: Box::pin(tokio::time::sleep(timeout)),
        expired: false,
    };
    req.set_payload(Payload::from(
        Box::pin(limited) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
    ));
    next.call(req).await
}

struct Deadline {
    body: Payload,
    timer: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = Pin::new(&mut self.body).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Poll::Pending
    }
}

/// The connections open from each client address. A connection opened while
/// its address already holds the limit is answered 429
/// `too_many_connections` at its first request, before its body is read,
/// and closed: one address cannot hold every connection the server keeps.
/// The connections of a trusted proxy are not counted (they carry every
/// client's requests); instead each client it forwards may have at most the
/// limit of requests in flight through it, one more is answered 429.
#[derive(Clone)]
pub struct PeerConnections {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Requests in flight per client forwarded by a trusted proxy.
    forwarded: Arc<Mutex<HashMap<IpAddr, usize>>>,
    trusted: Arc<TrustedProxies>,
    limit: usize,
}

/// One accepted connection, kept with the connection: dropped when it closes.
struct PeerConnection {
    peer: IpAddr,
    over_limit: bool,
    /// `None` for a trusted proxy's connection, which is not counted.
    registry: Option<PeerConnections>,
}

impl PeerConnections {
    pub fn new(limit: usize, trusted: TrustedProxies) -> Self {
        Self {
            open: Arc::default(),
            forwarded: Arc::default(),
            trusted: Arc::new(trusted),
            limit,
        }
    }

    /// Counts a new connection (actix's `on_connect` hook).
    pub fn on_connect(&self, connection: &dyn Any, data: &mut Extensions) {
        let Some(peer) = connection
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|stream| stream.peer_addr().ok())
        else {
            return;
        };
        let peer = peer.ip().to_canonical();
        if self.trusted.contains(peer) {
            data.insert(PeerConnection {
                peer,
                over_limit: false,
                registry: None,
            });
            return;
        }
        let held = add(&self.open, peer);
        data.insert(PeerConnection {
            peer,
            over_limit: held > self.limit,
            registry: Some(self.clone()),
        });
    }

    /// The client of `req`: its peer, or the address a trusted proxy
    /// forwarded; and whether it is such a forwarded client (a trusted
    /// proxy's own requests, without the header, are not limited).
    fn client_of(&self, req: &ServiceRequest) -> (IpAddr, bool) {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |peer| {
                peer.ip().to_canonical()
            });
        let client = self.trusted.client(peer, forwarded_for(req.headers()));
        (client, client != peer && self.trusted.contains(peer))
    }
}

/// One more for `address`; how many it holds now.
fn add(counts: &Mutex<HashMap<IpAddr, usize>>, address: IpAddr) -> usize {
    let mut counts = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let held = counts.entry(address).or_insert(0);
    *held += 1;
    *held
}

/// One fewer for `address`.
fn remove(counts: &Mutex<HashMap<IpAddr, usize>>, address: IpAddr) {
    let mut counts = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(held) = counts.get_mut(&address) {
        *held -= 1;
        if *held == 0 {
            counts.remove(&address);
        }
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        if let Some(registry) = &self.registry {
            remove(&registry.open, self.peer);
        }
    }
}

/// A request in flight for a client a trusted proxy forwarded.
struct InFlight {
    client: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        remove(&self.counts, self.client);
    }
}

/// Finds the request's client (stored as [`ClientAddress`] for the failure
/// limiter and the handlers), and answers the requests of a client past its
/// share with 429: a connection past its address's limit is closed; a
/// request past the limit of a client a trusted proxy forwards is refused alone.
pub async fn refuse_crowding(
    peers: PeerConnections,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let (client, forwarded) = peers.client_of(&req);
    req.extensions_mut().insert(ClientAddress(client));
    let crowding = req
        .conn_data::<PeerConnection>()
        .is_some_and(|connection| connection.over_limit);
    if crowding {
        return Ok(req
            .into_response(too_many_connections(true))
            .map_into_right_body());
    }
    let _in_flight = if forwarded {
        let held = add(&peers.forwarded, client);
        let in_flight = InFlight {
            client,
            counts: peers.forwarded.clone(),
        };
        if held > peers.limit {
            return Ok(req
                .into_response(too_many_connections(false))
                .map_into_right_body());
        }
        Some(in_flight)
    } else {
        None
    };
    Ok(next.call(req).await?.map_into_left_body())
}

/// 429 `too_many_connections`, closing the connection when `close`.
fn too_many_connections(close: bool) -> actix_web::HttpResponse {
    metrics::counter!("shop_http_connections_refused_total").increment(1);
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        "Too many connections",
    )
    .with_detail(
        "This address holds too many open connections; reuse one, or close some and retry.",
    )
    .error_response();
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_never_exceed_what_the_open_files_limit_holds() {
        let budget = connection_budget(usize::MAX);
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert!(budget as u64 + RESERVED_DESCRIPTORS <= soft.max(RESERVED_DESCRIPTORS + 1));
        assert_eq!(connection_budget(16), 16, "a budget that fits is kept");
    }
}
