//! Where webhooks may be delivered. Unless private destinations are allowed, a URL whose host is,
//! or resolves to, a loopback, private, link-local or otherwise internal address is refused, so a
//! tenant cannot make the server call into the network it runs in. Resolution and connection use
//! the same addresses (the resolver below feeds the HTTP clients), so DNS rebinding gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The delivery was refused because of where it would go.
#[derive(Debug, thiserror::Error)]
#[error(
    "destination refused: {0} is a loopback, private or link-local address (set webhooks.allow_private_destinations to allow it)"
)]
pub struct RefusedDestination(pub String);

/// True for addresses that are not on the public internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

/// IPv6, including the prefixes that carry an IPv4 address: a translator or tunnel on the way
/// delivers to that IPv4 address, so it decides. Prefixes whose IPv4 address cannot be told, or
/// that no public destination uses, are internal whole.
fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let low_v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-translated ::ffff:0:a.b.c.d (SIIT).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => is_internal_v4(low_v4()),
        // IPv4-compatible ::a.b.c.d (deprecated; `::` and `::1` among them): nothing public.
        [0, 0, 0, 0, 0, 0, _, _] => true,
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): DNS64 gives these for IPv4-only hosts.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => is_internal_v4(low_v4()),
        // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215): the operator's own translators.
        [0x64, 0xff9b, 1, ..] => true,
        // 6to4 2002:AABB:CCDD::/48 (RFC 3056): relays deliver to AA.BB.CC.DD.
        [0x2002, high, low, ..] => is_internal_v4(Ipv4Addr::new(
            (high >> 8) as u8,
            high as u8,
            (low >> 8) as u8,
            low as u8,
        )),
        // Teredo 2001:0::/32 (a tunnel through a server to an obfuscated IPv4 client) and
        // documentation 2001:db8::/32.
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] => true,
        // Discard-only 100::/64 (RFC 6666).
        [0x100, 0, 0, 0, ..] => true,
        [first, ..] => {
            v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed)
        }
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || o[0] >= 240 // reserved
}

/// Checks a URL whose host is an IP literal (those never reach the resolver).
pub fn check_literal_host(
    url: &reqwest::Url,
    allow_private: bool,
) -> Result<(), RefusedDestination> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_internal(ip) {
        Err(RefusedDestination(ip.to_string()))
    } else {
        Ok(())
    }
}

/// A resolver that drops internal addresses (unless allowed) and fails when none are left. It
/// feeds reqwest (webhooks, imports) and the S3 client (the buckets of the transcode API).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl GuardedResolver {
    /// The addresses of `host` that may be reached.
    async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect();
        let kept: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|ip| self.allow_private || !is_internal(*ip))
            .collect();
        if kept.is_empty() {
            let shown = addrs
                .first()
                .map(|ip| format!("{host} ({ip})"))
                .unwrap_or_else(|| host.to_string());
            return Err(Box::new(RefusedDestination(shown)));
        }
        Ok(kept)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let kept = resolver.resolve_host(name.as_str()).await?;
            Ok(Box::new(kept.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs)
        })
    }
}

impl ResolveDns for GuardedResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move { self.resolve_host(name).await.map_err(ResolveDnsError::new) })
    }
}

pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

/// True when `err` (or anything in its chain) is a [`RefusedDestination`].
pub fn is_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<RefusedDestination>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resolver the S3 client uses refuses a name that leads inside, unless allowed.
    #[tokio::test]
    async fn the_s3_resolver_refuses_internal_names() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let refused = guarded.resolve_dns("localhost").await.unwrap_err();
        let source = std::error::Error::source(&refused).expect("the refusal");
        assert!(source.is::<RefusedDestination>(), "{source}");
        let allowed = GuardedResolver {
            allow_private: true,
        };
        let ips = allowed.resolve_dns("localhost").await.unwrap();
        assert!(
            ips.iter().all(|ip| ip.is_loopback()) && !ips.is_empty(),
            "{ips:?}"
        );
    }

    #[track_caller]
    fn assert_internal(internal: bool, ips: &[&str]) {
        for ip in ips {
            assert_eq!(is_internal(ip.parse().unwrap()), internal, "{ip}");
        }
    }

    #[test]
    fn internal_addresses() {
        assert_internal(
            true,
            &[
                "127.0.0.1",
                "10.1.2.3",
                "172.16.0.1",
                "192.168.1.1",
                "169.254.169.254",
                "0.0.0.0",
                "100.64.0.1",
                "::1",
                "::",
                "fd00::1",
                "fe80::1",
                "fec0::1",
                "ff02::1",
                "::ffff:127.0.0.1",
                "::ffff:10.0.0.1",
            ],
        );
        assert_internal(
            false,
            &[
                "8.8.8.8",
                "1.1.1.1",
                "2606:4700:4700::1111",
                "172.32.0.1",
                "::ffff:8.8.8.8",
            ],
        );
    }

    #[test]
    fn nat64_addresses_are_judged_by_their_ipv4_address() {
        assert_internal(
            true,
            &[
                "64:ff9b::",
                "64:ff9b::127.0.0.1",
                "64:ff9b::10.0.0.1",
                "64:ff9b::169.254.169.254",
                "64:ff9b::192.168.0.1",
                "64:ff9b::a9fe:a9fe",
                // The local-use prefix is internal whatever it embeds.
                "64:ff9b:1::8.8.8.8",
                "64:ff9b:1:ffff::1",
            ],
        );
        // DNS64 on an IPv6-only host maps public IPv4 receivers here: they stay reachable.
        assert_internal(false, &["64:ff9b::8.8.8.8", "64:ff9b::1.1.1.1"]);
    }

    #[test]
    fn ipv4_compatible_and_translated_addresses() {
        assert_internal(
            true,
            &[
                "::127.0.0.1",
                "::10.0.0.1",
                "::8.8.8.8",
                "::ffff:0:127.0.0.1",
                "::ffff:0:192.168.1.1",
            ],
        );
        assert_internal(false, &["::ffff:0:8.8.8.8"]);
    }

    #[test]
    fn sixtofour_addresses_are_judged_by_their_ipv4_address() {
        assert_internal(
            true,
            &[
                "2002:7f00:1::1",         // 127.0.0.1
                "2002:a00:1::1",          // 10.0.0.1
                "2002:a9fe:a9fe::1",      // 169.254.169.254
                "2002:c0a8:101:1::1",     // 192.168.1.1
                "2002::1",                // 0.0.0.0
                "2002:ac10:1:ffff::abcd", // 172.16.0.1
            ],
        );
        assert_internal(false, &["2002:808:808::1", "2002:101:101:1::1"]);
    }

    #[test]
    fn tunnels_and_reserved_ranges() {
        assert_internal(
            true,
            &[
                "2001::1",
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "2001:db8::1",
                "100::1",
            ],
        );
        // Other 2001::/16 space is ordinary global unicast.
        assert_internal(false, &["2001:4860:4860::8888"]);
    }

    #[test]
    fn literal_hosts_are_checked() {
        let url: reqwest::Url = "http://127.0.0.1:9/hook".parse().unwrap();
        assert!(check_literal_host(&url, false).is_err());
        assert!(check_literal_host(&url, true).is_ok());
        let url: reqwest::Url = "http://[::1]/hook".parse().unwrap();
        assert!(check_literal_host(&url, false).is_err());
    }
}
