//! `--link` values: where a device's bytes come from.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a device's bytes come from (`--link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// `tcp:HOST:PORT`: connect (QEMU with `-serial tcp:HOST:PORT,server=on,wait=off`), and
    /// reconnect with backoff whenever the connection drops.
    Tcp(String),
    /// `listen:HOST:PORT`: accept connections (QEMU with `-serial tcp:HOST:PORT`, client mode);
    /// each connection is decoded on its own.
    Listen(SocketAddr),
    /// `serial:/dev/ttyACM0[@BAUD]`: a serial port (default 115200 baud).
    Serial {
        /// The device file.
        path: PathBuf,
        /// The baud rate.
        baud: u32,
    },
    /// `file:PATH`: a recorded byte stream, read once (the link ends at its end).
    File(PathBuf),
    /// `rtt:CHIP[@CHANNEL]`: a real board's RTT up-channel through probe-rs (cargo feature
    /// `rtt`). The channel defaults to the one named "telemetry", else 1.
    Rtt {
        /// probe-rs chip name, e.g. `nRF52840_xxAA` (`probe-rs chip list`). TODO(4).
        chip: String,
        /// Up-channel number.
        channel: Option<usize>,
    },
}

impl FromStr for LinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected tcp:HOST:PORT, listen:HOST:PORT, serial:/dev/ttyX[@BAUD], file:PATH or rtt:CHIP[@CHANNEL]";
        let Some((scheme, rest)) = s.split_once(':') else {
            return Err(format!("bad link `{s}`: {usage}"));
        };
        if rest.is_empty() {
            return Err(format!(
                "bad link `{s}`: nothing after `{scheme}:`; {usage}"
            ));
        }
        match scheme {
            "tcp" => {
                if !rest.contains(':') {
                    return Err(format!("bad link `{s}`: tcp needs HOST:PORT"));
                }
                Ok(Self::Tcp(rest.to_owned()))
            }
            "listen" => rest
                .parse()
                .map(Self::Listen)
                .map_err(|e| format!("bad link `{s}`: {e}; listen needs IP:PORT")),
            "serial" => {
                let (path, baud) = match rest.rsplit_once('@') {
                    Some((p, b)) => (
                        p,
                        b.parse()
                            .map_err(|_| format!("bad link `{s}`: baud `{b}` is not a number"))?,
                    ),
                    None => (rest, 115_200),
                };
                Ok(Self::Serial {
                    path: path.into(),
                    baud,
                })
            }
            "file" => Ok(Self::File(rest.into())),
            "rtt" => {
                let (chip, channel) = match rest.split_once('@') {
                    Some((c, n)) => (
                        c,
                        Some(n.parse().map_err(|_| {
                            format!("bad link `{s}`: rtt channel `{n}` is not a number")
                        })?),
                    ),
                    None => (rest, None),
                };
                Ok(Self::Rtt {
                    chip: chip.to_owned(),
                    channel,
                })
            }
            _ => Err(format!("bad link `{s}`: unknown kind `{scheme}`; {usage}")),
        }
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Listen(a) => write!(f, "listen:{a}"),
            Self::Serial { path, baud } => write!(f, "serial:{}@{baud}", path.display()),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Rtt {
                chip,
                channel: None,
            } => write!(f, "rtt:{chip}"),
            Self::Rtt {
                chip,
                channel: Some(n),
            } => write!(f, "rtt:{chip}@{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_link_kind_and_rejects_bad_ones() {
        assert_eq!(
            "tcp:127.0.0.1:7000".parse(),
            Ok(LinkSpec::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "listen:127.0.0.1:7001".parse(),
            Ok(LinkSpec::Listen("127.0.0.1:7001".parse().unwrap()))
        );
        assert_eq!(
            "serial:/dev/ttyACM0".parse(),
            Ok(LinkSpec::Serial {
                path: "/dev/ttyACM0".into(),
                baud: 115_200
            })
        );
        assert_eq!(
            "serial:/dev/ttyUSB1@9600".parse(),
            Ok(LinkSpec::Serial {
                path: "/dev/ttyUSB1".into(),
                baud: 9600
            })
        );
        assert_eq!(
            "rtt:nRF52840_xxAA@1".parse(),
            Ok(LinkSpec::Rtt {
                chip: "nRF52840_xxAA".into(),
                channel: Some(1)
            })
        );
        assert_eq!("file:a/b.bin".parse(), Ok(LinkSpec::File("a/b.bin".into())));
        for bad in [
            "",
            "tcp",
            "tcp:",
            "tcp:localhost",
            "udp:1.2.3.4:5",
            "listen:host:1",
            "serial:/dev/x@fast",
        ] {
            let err = bad.parse::<LinkSpec>().unwrap_err();
            assert!(err.starts_with("bad link"), "{bad}: {err}");
        }
        for s in ["tcp:h:1", "serial:/dev/x@9600", "rtt:chip@2", "rtt:chip"] {
            assert_eq!(s.parse::<LinkSpec>().unwrap().to_string(), s);
        }
    }
}
