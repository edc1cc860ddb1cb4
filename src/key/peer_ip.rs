use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::Request;

use super::{KeyError, KeyExtractor};

/// The address of the connection a request came on, put into the request's extensions by
/// [`endpoint::serve`](crate::endpoint::serve) (or by your own server: insert it, or a plain
/// `SocketAddr`, yourself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Takes the key from the client's IP address: the connection's peer address, or, behind
/// proxies you trust, the rightmost `X-Forwarded-For` address that is not one of them.
///
/// The connection's address is read from the request's extensions: a [`PeerAddr`]
/// ([`endpoint::serve`](crate::endpoint::serve) records one), a plain `SocketAddr` (as other
/// hyper servers record it), or, with the cargo feature `axum`, axum's
/// `ConnectInfo<SocketAddr>` (`axum::serve(listener,
/// app.into_make_service_with_connect_info::<SocketAddr>())`). A request with none of
/// them is the server's fault: [`KeyError::Unconfigured`], which the layer answers with
/// `500` and logs at `error`.
///
/// `X-Forwarded-For` is read only when the connection comes from a trusted proxy, and only
/// from the right, so a client cannot choose its own key by sending the header itself.
///
/// # Examples
///
/// ```
/// use ringlimit::key::{KeyExtractor, PeerAddr, PeerIpKey};
/// use http::Request;
///
/// let proxy = "10.0.0.2".parse().unwrap();
/// let key = PeerIpKey::new().trust_proxies([proxy]);
/// let mut request = Request::get("/")
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(PeerAddr("10.0.0.2:5555".parse().unwrap()));
/// // 6.6.6.6 was written by the client; 203.0.113.7 by the trusted proxy.
/// assert_eq!(key.extract(&request).unwrap(), "203.0.113.7");
/// ```
#[derive(Clone, Debug, Default)]
pub struct PeerIpKey {
    trusted: Arc<[IpAddr]>,
}

impl PeerIpKey {
    /// The connection's peer address; no proxy trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `proxies` to append the address they saw to `X-Forwarded-For`.
    pub fn trust_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted = proxies.into_iter().collect();
        self
    }

    fn trusts(&self, ip: &IpAddr) -> bool {
        self.trusted.contains(ip)
    }
}

impl<B> KeyExtractor<B> for PeerIpKey {
    fn extract<'r>(&self, request: &'r Request<B>) -> Result<Cow<'r, str>, KeyError> {
        let peer = connection_address(request)
            .ok_or_else(|| KeyError::Unconfigured {
                what: "a client address for PeerIpKey (serve with ringlimit::endpoint::serve, \
                       with axum's connect info and the `axum` feature, or insert PeerAddr)"
                    .into(),
            })?
            .ip();
        let mut client = peer;
        if self.trusts(&peer) {
            let hops = request.headers().get_all("x-forwarded-for").iter().rev();
            'hops: for value in hops {
                let value = value.to_str().map_err(|_| invalid())?;
                for hop in value.rsplit(',') {
                    client = hop.trim().parse().map_err(|_| invalid())?;
                    if !self.trusts(&client) {
                        break 'hops;
                    }
                }
            }
        }
        Ok(Cow::Owned(client.to_string()))
    }
}

/// The address of the connection `request` came on, as the server recorded it.
fn connection_address<B>(request: &Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    let recorded = extensions.get::<PeerAddr>().map(|peer| peer.0);
    let recorded = recorded.or_else(|| extensions.get::<SocketAddr>().copied());
    #[cfg(feature = "axum")]
    let recorded = recorded.or_else(|| {
        let info = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>();
        info.map(|info| info.0)
    });
    recorded
}

fn invalid() -> KeyError {
    KeyError::Invalid {
        what: "header `x-forwarded-for`".into(),
        reason: "not a list of IP addresses",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request<()> {
        let mut builder = Request::get("/");
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(format!("{peer}:4000").parse().unwrap()));
        request
    }

    fn key() -> PeerIpKey {
        PeerIpKey::new().trust_proxies(["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()])
    }

    #[test]
    fn the_address_is_read_as_any_common_server_records_it() {
        let key = PeerIpKey::new();
        let mut plain = Request::get("/").body(()).unwrap();
        plain
            .extensions_mut()
            .insert("203.0.113.5:1234".parse::<SocketAddr>().unwrap());
        assert_eq!(key.extract(&plain).unwrap(), "203.0.113.5");
        #[cfg(feature = "axum")]
        {
            let mut axum_served = Request::get("/").body(()).unwrap();
            let address: SocketAddr = "203.0.113.6:1234".parse().unwrap();
            axum_served
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(address));
            assert_eq!(key.extract(&axum_served).unwrap(), "203.0.113.6");
        }
    }

    #[test]
    fn a_direct_client_is_its_peer_address_whatever_it_claims() {
        let key = key();
        assert_eq!(
            key.extract(&request("203.0.113.9", &["1.2.3.4"])).unwrap(),
            "203.0.113.9"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_counts() {
        let key = key();
        let via_two = request("10.0.0.2", &["6.6.6.6, 203.0.113.7, 10.0.0.1"]);
        assert_eq!(key.extract(&via_two).unwrap(), "203.0.113.7");
        let split_headers = request("10.0.0.2", &["6.6.6.6", "203.0.113.8"]);
        assert_eq!(key.extract(&split_headers).unwrap(), "203.0.113.8");
        let v6 = request("10.0.0.1", &["2001:db8::1"]);
        assert_eq!(key.extract(&v6).unwrap(), "2001:db8::1");
    }

    #[test]
    fn bad_or_missing_input_is_a_clear_error() {
        let key = key();
        let garbage = request("10.0.0.1", &["not-an-ip"]);
        assert_eq!(
            key.extract(&garbage).unwrap_err().to_string(),
            "invalid header `x-forwarded-for`: not a list of IP addresses"
        );
        // Regression: a server that records no address got `400` blaming the client.
        let no_peer = Request::get("/").body(()).unwrap();
        let error = key.extract(&no_peer).unwrap_err();
        assert!(matches!(error, KeyError::Unconfigured { .. }));
        assert!(error.is_server_error());
        // Only proxies in the header: the leftmost (oldest) hop is all there is.
        let only_proxies = request("10.0.0.1", &["10.0.0.2"]);
        assert_eq!(key.extract(&only_proxies).unwrap(), "10.0.0.2");
    }
}
