//! `pvmux run --net none|host` and `-p/--publish [IP:]HOSTPORT:GUESTPORT[/tcp|/udp]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pvmux_host::net::{NetConfig, Publish, PublishProto};

/// `--net`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    /// The guest has only its own loopback (127.0.0.0/8, ::1), isolated from the host's.
    #[default]
    None,
    /// The guest's internet sockets are host sockets the host opens for it: its addresses,
    /// 127.0.0.1 included, are the host's.
    Host,
}

/// Parses one `--publish` value: `[IP:]HOSTPORT:GUESTPORT[/tcp|/udp]` (IP default
/// 127.0.0.1; an IPv6 address in brackets; protocol default TCP). Port ranges are refused.
pub(super) fn parse_publish(s: &str) -> Result<Publish, String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, PublishProto::Tcp),
        Some((spec, "udp")) => (spec, PublishProto::Udp),
        Some((_, p)) => {
            return Err(format!(
                "--publish {s}: unknown protocol {p:?} (use /tcp or /udp)"
            ))
        }
        None => (s, PublishProto::Tcp),
    };
    let (front, guest) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("--publish {s}: expected [IP:]HOSTPORT:GUESTPORT"))?;
    let (ip, host) = match front.rsplit_once(':') {
        Some((ip, host)) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("--publish {s}: {ip:?} is not an IP address"))?;
            (ip, host)
        }
        None => (IpAddr::V4(Ipv4Addr::LOCALHOST), front),
    };
    let port = |p: &str, what: &str| -> Result<u16, String> {
        if p.contains('-') {
            return Err(format!(
                "--publish {s}: {what} {p:?}: port ranges are not supported (one port per rule)"
            ));
        }
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("--publish {s}: {what} {p:?} is not a port (1-65535)"))
    };
    Ok(Publish {
        host: SocketAddr::new(ip, port(host, "host port")?),
        guest_port: port(guest, "guest port")?,
        proto,
    })
}

/// The tenant's networking from the options. `--publish` with `--net host` is an error: the
/// guest's listeners are then host listeners already.
pub(super) fn config(mode: NetMode, publish: &[Publish]) -> Result<NetConfig, String> {
    if mode == NetMode::Host && !publish.is_empty() {
        return Err(
            "--publish is for --net none: with --net host the guest's listening \
                    sockets are host sockets already"
                .to_owned(),
        );
    }
    Ok(NetConfig {
        host: mode == NetMode::Host,
        publish: publish.to_vec(),
        max_sockets: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(p.host, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.guest_port, 80);
        let p = parse_publish("0.0.0.0:8080:80/tcp").unwrap();
        assert_eq!(p.host, "0.0.0.0:8080".parse().unwrap());
        let p = parse_publish("[::1]:9000:90").unwrap();
        assert_eq!(p.host, "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn publish_needs_net_none() {
        let p = parse_publish("8080:80").unwrap();
        assert!(config(NetMode::Host, &[p]).is_err());
        assert!(config(NetMode::None, &[p]).unwrap().enabled());
        assert!(!config(NetMode::None, &[]).unwrap().enabled());
        assert!(config(NetMode::Host, &[]).unwrap().host);
    }

    #[test]
    fn udp_rules_and_the_same_port_for_both_protocols() {
        let u = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!((u.proto, u.guest_port), (PublishProto::Udp, 53));
        assert_eq!(u.host, "127.0.0.1:5353".parse().unwrap());
        let t = parse_publish("5353:53/tcp").unwrap();
        assert!(config(NetMode::None, &[t, u]).unwrap().enabled());
    }

    #[test]
    fn bad_publish_values_say_why() {
        assert!(parse_publish("1:2/sctp").unwrap_err().contains("/udp"));
        assert!(parse_publish("53-54:53-54/udp")
            .unwrap_err()
            .contains("ranges"));
        assert!(parse_publish("0:53/udp").is_err());
        assert!(parse_publish("80").is_err());
        assert!(parse_publish("0:80").is_err());
        assert!(parse_publish("70000:80").is_err());
        assert!(parse_publish("nohost:1:2").is_err());
        assert!(parse_publish("1:2/sctp").is_err());
    }
}
