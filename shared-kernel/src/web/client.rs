//! The client's address: the TCP peer, or, when the peer is a reverse proxy
//! the operator trusts (`SHOP__SERVER__TRUSTED_PROXIES`), the address that
//! proxy forwarded in `X-Forwarded-For`. The failure limiter of
//! [`crate::web::auth`] and the per-client connection limit count by it.
//!
//! `X-Forwarded-For` is read only from a trusted peer (anyone else could
//! write any address in it), and then from the right: each proxy appends the
//! address it was called from, so the right-most entry that is not itself a
//! trusted proxy is the first address no trusted hop vouches for: the client.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::HttpMessage;
use actix_web::HttpRequest;
use ipnet::IpNet;

/// The header proxies append the client's address to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The addresses and networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// None: every client is its TCP peer (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// A comma- or space-separated list of addresses (`10.0.0.5`, `::1`) and
    /// CIDR networks (`10.0.0.0/8`, `fd00::/8`); empty for none.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                parse_net(entry).ok_or_else(|| {
                    format!(
                        "`{entry}` is neither an IP address nor a CIDR network (such as 10.0.0.0/8)"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client of a request that came from `peer` carrying the
    /// `X-Forwarded-For` values `forwarded` (each header's value, in order).
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let entries: Vec<&str> = forwarded
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        // The hop that appended the entry being read: trusted so far.
        let mut vouched = peer;
        for entry in entries.iter().rev() {
            let Some(address) = parse_forwarded(entry) else {
                // A trusted hop passed on something that is no address: the
                // client is not known past it, so it counts as the client.
                return vouched;
            };
            if !self.contains(address) {
                return address;
            }
            vouched = address;
        }
        // Every hop is trusted (or no header at all): the left-most one.
        vouched
    }
}

/// `10.0.0.1` (a host) or `10.0.0.0/8`.
fn parse_net(entry: &str) -> Option<IpNet> {
    if entry.contains('/') {
        return IpNet::from_str(entry).ok().map(|net| net.trunc());
    }
    IpAddr::from_str(entry).ok().map(IpNet::from)
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5`,
/// `[::1]:5`), as some proxies write it.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    IpAddr::from_str(entry)
        .ok()
        .or_else(|| std::net::SocketAddr::from_str(entry).ok().map(|a| a.ip()))
        .or_else(|| IpAddr::from_str(entry.strip_prefix('[')?.strip_suffix(']')?).ok())
        .map(|address| address.to_canonical())
}

/// The client's address, as the outermost middleware found it (stored in
/// the request's extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client address of `req`: what the middleware stored, else its TCP
/// peer (never a header: without the middleware, nothing is trusted).
pub fn client_address(req: &HttpRequest) -> IpAddr {
    if let Some(ClientAddress(address)) = req.extensions().get::<ClientAddress>() {
        return *address;
    }
    req.peer_addr()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |peer| {
            peer.ip().to_canonical()
        })
}

/// The `X-Forwarded-For` values of a request's headers, in order.
pub fn forwarded_for(headers: &actix_web::http::header::HeaderMap) -> Vec<&str> {
    headers
        .get_all(X_FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_networks() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7 ::1,fd00::/8").unwrap();
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("192.168.1.7")));
        assert!(!trusted.contains(ip("192.168.1.8")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(!trusted.contains(ip("fe80::1")));
        assert!(
            trusted.contains(ip("::ffff:10.1.2.3")),
            "an IPv4-mapped address is its IPv4 address"
        );
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse(" , ").unwrap().is_empty());
        // A network written with host bits set still means the network.
        assert!(
            TrustedProxies::parse("10.1.2.3/16")
                .unwrap()
                .contains(ip("10.1.200.1"))
        );
        for bad in [
            "10.0.0.0/33",
            "nginx",
            "10.0.0",
            "10.0.0.0/",
            "/8",
            "fd00::/129",
        ] {
            let error = TrustedProxies::parse(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(
            trusted.client(ip("203.0.113.9"), ["1.2.3.4"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::none().client(ip("127.0.0.1"), ["1.2.3.4"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_trusted_peer_forwards_the_right_most_untrusted_address() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.2");
        assert_eq!(trusted.client(peer, ["198.51.100.7"]), ip("198.51.100.7"));
        // A client that writes its own header only adds entries on the left.
        assert_eq!(
            trusted.client(peer, ["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        // Through two trusted hops, over two header lines.
        assert_eq!(
            trusted.client(peer, ["6.6.6.6, 198.51.100.7", "10.0.0.9"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client(peer, ["198.51.100.7:4711"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client(peer, ["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client(peer, ["::ffff:198.51.100.7"]),
            ip("198.51.100.7")
        );
        // No header: the proxy itself (health checks, its own requests).
        assert_eq!(trusted.client(peer, []), peer);
        // Every hop trusted: the left-most.
        assert_eq!(trusted.client(peer, ["10.1.1.1, 10.2.2.2"]), ip("10.1.1.1"));
        // Garbage where the client should be: the hop that passed it on.
        assert_eq!(trusted.client(peer, ["unknown"]), peer);
        assert_eq!(
            trusted.client(peer, ["1.1.1.1, garbage, 10.3.3.3"]),
            ip("10.3.3.3")
        );
    }
}
