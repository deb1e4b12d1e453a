//! TLS from the router to its nodes, with libpq's `sslmode` and `sslrootcert` meanings.
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` (default) | never | — |
//! | `prefer` | if the server offers it, else plain | only if `sslrootcert` is set: chain, as `verify-ca` |
//! | `require` | always; a server without TLS is refused | only if `sslrootcert` is set: chain, as `verify-ca` |
//! | `verify-ca` | always | chain up to a root of `sslrootcert`, whatever name it carries |
//! | `verify-full` | always | chain, and the node's host name (or IP address) must be in it |
//!
//! `sslrootcert` is a PEM file of root certificates, or `system` for the operating system's store
//! (which, as in libpq 16, only `verify-full` may use: a public CA signs certificates for anyone,
//! so trusting one without checking the name proves nothing). `verify-ca` and `verify-full`
//! without `sslrootcert` read libpq's default, `~/.postgresql/root.crt`.
//!
//! - [`SslMode`], [`RootCerts`]: the settings.
//! - `verify`: the root store and the certificate checks behind each mode.
//! - `connect`: the handshake on a node's stream, and its failures as one-line messages.

mod connect;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::router::config::RouterConfig;
use crate::router::connector::NodeAddress;
use crate::router::error::RouterError;

pub(crate) use connect::{NodeTls, Socket};

/// Whether and how connections to the nodes use TLS (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain connections only (the default).
    #[default]
    Disable,
    /// TLS if the server offers it, plain otherwise.
    Prefer,
    /// TLS or nothing; the certificate is checked only if root certificates are given.
    Require,
    /// TLS, and the certificate must chain up to a trusted root; its names are not checked.
    VerifyCa,
    /// TLS, the certificate must chain up to a trusted root and name the node's host.
    VerifyFull,
}

/// Every mode, in the order of increasing protection, with its name.
const MODES: [(SslMode, &str); 5] = [
    (SslMode::Disable, "disable"),
    (SslMode::Prefer, "prefer"),
    (SslMode::Require, "require"),
    (SslMode::VerifyCa, "verify-ca"),
    (SslMode::VerifyFull, "verify-full"),
];

impl SslMode {
    /// Its libpq name (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        MODES
            .iter()
            .find(|(mode, _)| *mode == self)
            .map_or("disable", |(_, name)| name)
    }

    /// True if connections may use TLS at all.
    pub fn is_enabled(self) -> bool {
        self != SslMode::Disable
    }

    /// True if the mode itself asks for the certificate to be checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    /// A libpq name, case-insensitive. libpq's `allow` (plain first, TLS only if the server
    /// insists) is refused rather than silently treated as another mode.
    fn from_str(text: &str) -> Result<SslMode, String> {
        let text = text.trim();
        if let Some((mode, _)) = MODES
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
        {
            return Ok(*mode);
        }
        let names: Vec<&str> = MODES.iter().map(|(_, name)| *name).collect();
        let hint = if text.eq_ignore_ascii_case("allow") {
            " (allow is not supported: use prefer or disable)"
        } else {
            ""
        };
        Err(format!("{text:?} is not one of {}{hint}", names.join(", ")))
    }
}

/// Where the root certificates that a node's certificate must chain up to come from
/// (libpq's `sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootCerts {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`); only `verify-full` may use them.
    System,
}

impl RootCerts {
    /// `system` is the system store; anything else is a file path.
    pub fn parse(text: &str) -> RootCerts {
        if text == "system" {
            RootCerts::System
        } else {
            RootCerts::File(PathBuf::from(text))
        }
    }
}

impl fmt::Display for RootCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCerts::File(path) => write!(f, "{}", path.display()),
            RootCerts::System => f.write_str("system"),
        }
    }
}

/// Checks the combination of `sslmode` and `sslrootcert` that needs no file read.
pub(crate) fn validate(mode: SslMode, roots: Option<&RootCerts>) -> Result<(), String> {
    if roots == Some(&RootCerts::System) && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslmode {mode} may not be used with sslrootcert system (use verify-full): a \
             public CA signs certificates for anyone, only the host name check makes it safe"
        ));
    }
    if matches!(roots, Some(RootCerts::File(path)) if path.as_os_str().is_empty()) {
        return Err("sslrootcert is an empty path".to_string());
    }
    Ok(())
}

/// The TLS side of every connection the router opens: built once when the router starts (root
/// certificates read then), shared by the pools, probes and cancel requests of every node.
#[derive(Clone)]
pub(crate) struct Tls {
    mode: SslMode,
    /// None when TLS is off: then nothing is read and no handshake is ever attempted.
    connector: Option<MakeRustlsConnect>,
}

impl Tls {
    /// Reads the root certificates `config` names, if any, and prepares the handshake.
    pub(crate) fn from_config(config: &RouterConfig) -> Result<Tls, RouterError> {
        let mode = config.sslmode;
        let invalid = |why: String| RouterError::InvalidConfig(why);
        validate(mode, config.sslrootcert.as_ref()).map_err(invalid)?;
        if !mode.is_enabled() {
            return Ok(Tls {
                mode,
                connector: None,
            });
        }
        let client = verify::client_config(mode, config.sslrootcert.as_ref()).map_err(invalid)?;
        Ok(Tls {
            mode,
            connector: Some(MakeRustlsConnect::new(client)),
        })
    }

    /// What the PostgreSQL client is told: it knows only disable, prefer and require; the
    /// verify modes are require with a stricter certificate check (see `verify`).
    pub(crate) fn client_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Client;
        match self.mode {
            SslMode::Disable => Client::Disable,
            SslMode::Prefer => Client::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Client::Require,
        }
    }

    /// The handshake for connections to `node`, whose host is the name its certificate must carry.
    pub(crate) fn for_node(&self, node: &NodeAddress) -> NodeTls {
        NodeTls::new(
            self.mode,
            Arc::from(node.host.as_str()),
            self.connector.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_their_libpq_names() {
        for (mode, name) in MODES {
            assert_eq!(name.parse::<SslMode>(), Ok(mode));
            assert_eq!(name.to_ascii_uppercase().parse::<SslMode>(), Ok(mode));
            assert_eq!(mode.to_string(), name);
        }
        assert_eq!(SslMode::default(), SslMode::Disable);
    }

    #[test]
    fn unknown_modes_are_refused_with_the_choices() {
        let Err(message) = "verify_full".parse::<SslMode>() else {
            panic!("verify_full accepted");
        };
        assert!(message.contains("disable, prefer, require, verify-ca, verify-full"));
        let Err(message) = "allow".parse::<SslMode>() else {
            panic!("allow accepted");
        };
        assert!(message.contains("allow is not supported"), "{message}");
    }

    #[test]
    fn system_roots_need_verify_full() {
        for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyCa] {
            let refused = validate(mode, Some(&RootCerts::System));
            assert!(
                matches!(&refused, Err(m) if m.contains("use verify-full")),
                "{mode}: {refused:?}"
            );
        }
        assert_eq!(
            validate(SslMode::VerifyFull, Some(&RootCerts::System)),
            Ok(())
        );
        assert_eq!(RootCerts::parse("system"), RootCerts::System);
        assert_eq!(
            RootCerts::parse("/etc/ca.pem"),
            RootCerts::File("/etc/ca.pem".into())
        );
    }

    #[test]
    fn disabled_tls_reads_nothing() {
        let config = RouterConfig {
            sslrootcert: Some(RootCerts::File("/nonexistent/root.crt".into())),
            ..RouterConfig::default()
        };
        let tls = Tls::from_config(&config).map_err(|e| e.to_string());
        assert!(matches!(&tls, Ok(tls) if tls.connector.is_none()));
    }

    #[test]
    fn an_unreadable_root_file_is_a_configuration_error() {
        let config = RouterConfig {
            sslmode: SslMode::VerifyCa,
            sslrootcert: Some(RootCerts::File("/nonexistent/root.crt".into())),
            ..RouterConfig::default()
        };
        let message = Tls::from_config(&config).err().map(|e| e.to_string());
        assert!(
            matches!(&message, Some(m) if m.contains("/nonexistent/root.crt")),
            "{message:?}"
        );
    }
}
