//! How the client reached ferry: the scheme and host it sent its request
//! to, which its part URLs must start with when no `--public-url` is set
//! (a URL built from the listen address, `http://0.0.0.0:8080/…`, is of no
//! use to another machine). Forwarding headers are believed only from the
//! `--trusted-proxy` peers: from anyone else they would let a client steer
//! the URLs ferry hands out, and a proxy that does not set them would pass
//! a client's own through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::HOST;
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::error::ApiError;
use crate::service::Service;

/// `scheme://host[:port]`, as the client addressed this request.
pub struct ClientOrigin(pub String);

impl FromRequestParts<Arc<Service>> for ClientOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical());
        let trusted = peer.is_some_and(|ip| service.settings.trusted_proxies.iter().any(|net| net.contains(&ip)));
        let forwarded = if trusted { forwarded(&parts.headers) } else { Forwarded::default() };
        // HTTP/1.1 names the host in `Host`, HTTP/2 in the URI's authority.
        let direct =
            parts.headers.get(HOST).and_then(|v| v.to_str().ok()).or(parts.uri.authority().map(|a| a.as_str()));
        let scheme = forwarded.proto.unwrap_or_else(|| service.settings.scheme().into()).to_ascii_lowercase();
        let host = forwarded.host.as_deref().or(direct).unwrap_or_default();
        let bad = |what: &str| ApiError::invalid_parameter(format!("{what}: part URLs cannot be made from it"));
        if scheme != "http" && scheme != "https" {
            return Err(bad(&format!("the forwarded scheme `{scheme}` is neither http nor https")));
        }
        match host.parse::<Authority>() {
            Ok(authority) if !host.contains('@') => Ok(Self(format!("{scheme}://{authority}"))),
            _ if host.is_empty() => Err(bad("the request names no host (no `Host` header)")),
            _ => Err(bad(&format!("the host `{}` is not a host[:port]", host.escape_debug()))),
        }
    }
}

/// The address of the client a request came from: the peer, or, when the
/// peer is a trusted proxy, the nearest address in its forwarding chain
/// that is not one of the trusted proxies (entries further left could be
/// written by the client itself).
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let chain: Vec<String> = match values("forwarded") {
        forwarded if !forwarded.is_empty() => forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"').to_owned())
                })
            })
            .collect(),
        _ => values("x-forwarded-for").iter().flat_map(|v| v.split(',')).map(|v| v.trim().to_owned()).collect(),
    };
    let mut nearest = peer;
    for entry in chain.iter().rev() {
        // `for=` may carry a port, and brackets around IPv6.
        let host = entry.strip_prefix('[').and_then(|e| e.split(']').next()).unwrap_or(entry);
        let Ok(ip) = host.parse::<IpAddr>().or_else(|_| host.parse::<std::net::SocketAddr>().map(|a| a.ip())) else {
            break;
        };
        nearest = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    nearest
}

#[derive(Default)]
struct Forwarded {
    proto: Option<String>,
    host: Option<String>,
}

/// What the nearest trusted proxy says: RFC 7239 `Forwarded` if present
/// (its first element, added by the proxy the client talked to), else
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (their first values).
fn forwarded(headers: &HeaderMap) -> Forwarded {
    let first = |name: &str| {
        let value = headers.get(HeaderName::from_bytes(name.as_bytes()).ok()?)?.to_str().ok()?;
        Some(value.split(',').next()?.trim().to_owned()).filter(|v| !v.is_empty())
    };
    if let Some(element) = first("forwarded") {
        let mut found = Forwarded::default();
        for pair in element.split(';') {
            let Some((key, value)) = pair.split_once('=') else { continue };
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim().to_ascii_lowercase().as_str() {
                "proto" => found.proto = Some(value),
                "host" => found.host = Some(value),
                _ => {}
            }
        }
        return found;
    }
    Forwarded { proto: first("x-forwarded-proto"), host: first("x-forwarded-host") }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn the_forwarded_header_wins_and_its_first_element_counts() {
        let found = forwarded(&headers(&[
            ("forwarded", "for=10.0.0.1;proto=https;host=\"files.example.com\", for=10.0.0.2;host=inner"),
            ("x-forwarded-host", "other.example.com"),
        ]));
        assert_eq!((found.proto.as_deref(), found.host.as_deref()), (Some("https"), Some("files.example.com")));
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_address_of_a_trusted_chain() {
        let proxy: IpNet = "10.0.0.0/8".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &spoofed, &[proxy]), ip("203.0.113.9"));
        // From an untrusted peer the headers count for nothing.
        assert_eq!(client_addr(ip("198.51.100.1"), &spoofed, &[proxy]), ip("198.51.100.1"));
        let rfc = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.2")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &rfc, &[proxy]), ip("2001:db8::1"));
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &garbage, &[proxy]), ip("10.0.0.1"));
    }

    #[test]
    fn the_x_forwarded_headers_give_their_first_values() {
        let found =
            forwarded(&headers(&[("x-forwarded-proto", "https, http"), ("x-forwarded-host", "a.example:8443")]));
        assert_eq!((found.proto.as_deref(), found.host.as_deref()), (Some("https"), Some("a.example:8443")));
        let none = forwarded(&headers(&[]));
        assert!(none.proto.is_none() && none.host.is_none());
    }
}
