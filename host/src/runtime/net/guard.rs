//! The server-side request forgery guard: which addresses a granted *name*
//! may never lead to (loopback, private, link-local and cloud metadata,
//! carrier-grade NAT, unspecified, multicast, and the same inside IPv6
//! forms). A grant that names an address literally is exempt.

use std::net::{IpAddr, Ipv4Addr};

/// Whether a granted name resolving to `ip` must be refused.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            // ::a.b.c.d (IPv4-compatible) and 64:ff9b::/96 (NAT64) carry an IPv4 address.
            let s = v6.segments();
            let o = v6.octets();
            let embedded = v6.to_ipv4().into_iter().chain(
                (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0])
                    .then(|| Ipv4Addr::new(o[12], o[13], o[14], o[15])),
            );
            embedded.into_iter().any(is_internal_v4)
                || v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.is_multicast()
        }
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || v4.is_broadcast()
        || v4.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::is_internal;

    #[test]
    fn internal_addresses_in_every_form() {
        for (ip, internal) in [
            ("127.0.0.1", true),
            ("127.5.6.7", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.100.100.200", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("255.255.255.255", true),
            ("93.184.216.34", false),
            ("8.8.8.8", false),
            ("::1", true),
            ("::", true),
            ("fc00::1", true),
            ("fd00:ec2::254", true),
            ("fe80::1", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::127.0.0.1", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b::808:808", false),
            ("2606:2800:220:1::", false),
        ] {
            assert_eq!(is_internal(ip.parse().unwrap()), internal, "{ip}");
        }
    }
}
