//! `server.callback_allow`: which peer addresses may post callbacks at all.
//! A list of CIDRs (a bare address means that one host); empty allows any.
//! The peer is the TCP address, never a forwarding header, which a client
//! can write freely.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One allowed network, written as `10.0.0.0/8`, `2001:db8::/32` or a bare
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowNet(IpNet);

impl AllowNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for AllowNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(net) = t.parse::<IpNet>() {
            // `10.1.2.3/8` is almost certainly meant as `10.0.0.0/8`;
            // storing the network form makes the log and API say so.
            return Ok(AllowNet(net.trunc()));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(AllowNet(IpNet::from(ip)));
        }
        Err(format!(
            "{s:?} is not a CIDR (write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or one address)"
        ))
    }
}

impl fmt::Display for AllowNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for AllowNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `peer` may post callbacks under `allow` (empty = anyone). An
/// IPv4 client of a dual-stack listener shows up as `::ffff:a.b.c.d`; it
/// is matched as the IPv4 address it is.
pub fn allowed(allow: &[AllowNet], peer: Option<IpAddr>) -> Result<(), String> {
    if allow.is_empty() {
        return Ok(());
    }
    let Some(ip) = peer.map(|p| p.to_canonical()) else {
        return Err(
            "callback refused: peer address unknown and server.callback_allow is set".into(),
        );
    };
    if allow.iter().any(|n| n.contains(ip)) {
        Ok(())
    } else {
        Err(format!(
            "callbacks from {ip} are not allowed (server.callback_allow)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<AllowNet> {
        list.iter().map(|s| s.parse().expect("valid")).collect()
    }

    #[test]
    fn empty_allows_anyone_even_unknown() {
        assert!(allowed(&[], None).is_ok());
        assert!(allowed(&[], Some("203.0.113.9".parse().expect("ip"))).is_ok());
    }

    #[test]
    fn cidrs_bare_addresses_and_mapped_v4() {
        let allow = nets(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
        let ok = |s: &str| allowed(&allow, Some(s.parse().expect("ip"))).is_ok();
        assert!(ok("10.200.3.4"));
        assert!(ok("192.168.1.7"));
        assert!(!ok("192.168.1.8"));
        assert!(ok("2001:db8::1"));
        assert!(ok("::ffff:10.1.1.1"), "dual-stack IPv4 peer");
        assert!(!ok("127.0.0.1"));
        let err = allowed(&allow, Some("127.0.0.1".parse().expect("ip"))).unwrap_err();
        assert!(
            err.contains("127.0.0.1") && err.contains("callback_allow"),
            "{err}"
        );
        assert!(allowed(&allow, None).is_err(), "unknown peer fails closed");
    }

    #[test]
    fn host_bits_are_truncated_and_garbage_refused() {
        let n: AllowNet = "10.1.2.3/8".parse().expect("valid");
        assert_eq!(n.to_string(), "10.0.0.0/8");
        for bad in ["10.0.0.0/33", "10.0.0", "any", "", "::/129"] {
            let err = bad.parse::<AllowNet>().unwrap_err();
            assert!(err.contains("not a CIDR"), "{bad}: {err}");
        }
    }
}
