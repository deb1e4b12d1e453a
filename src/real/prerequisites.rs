//! Whether the tests that start a real PostgreSQL cluster can run here, and what they do when they
//! cannot: on a developer's machine they pass with a printed "skipped" line; under continuous
//! integration (`CI=true`) a missing server is a failure, so that a broken image cannot turn the
//! real-cluster tests into silent passes.
//!
//! [`verdict`] is the decision (pure, unit-tested); [`skip_without_postgres`] applies it to this
//! machine and is the one gate every real-cluster test goes through.

use std::path::{Path, PathBuf};

use crate::real::PG_BIN_DIR;

/// The environment variable CI systems set (GitHub Actions, GitLab CI and `.ci/run` set `true`).
pub const CI_VARIABLE: &str = "CI";
/// How to install what is missing (Debian/Ubuntu with the PGDG or distribution packages).
pub const INSTALL_HINT: &str = "apt-get install postgresql-15";

/// What a real-cluster test needs of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// The PostgreSQL 15 server binaries (`initdb`, `postgres`, `pg_ctl`...).
    Server,
    /// The server binaries and the `pg_stat_statements` module.
    ServerAndStatements,
}

/// What is missing, with the file whose absence shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The server binaries (`initdb` is not there).
    Server(PathBuf),
    /// The `pg_stat_statements` module (its shared library is not there).
    StatementsModule(PathBuf),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Server(path) => write!(
                f,
                "PostgreSQL 15 is not installed ({} is missing)",
                path.display()
            ),
            Missing::StatementsModule(path) => write!(
                f,
                "the pg_stat_statements module of PostgreSQL 15 is not installed ({} is missing)",
                path.display()
            ),
        }
    }
}

/// What a test does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything it needs is there.
    Run,
    /// Pass without running, printing this line (a local run).
    Skip(String),
    /// Fail with this message (under CI).
    Fail(String),
}

/// Whether the value of `CI` means a CI run: `true` or `1` (any case); unset, empty, `false` or
/// `0` do not.
pub fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The decision for a test given what is missing and the value of `CI`.
pub fn verdict(missing: Option<&Missing>, ci: Option<&str>) -> Verdict {
    let Some(missing) = missing else {
        return Verdict::Run;
    };
    if is_ci(ci) {
        Verdict::Fail(format!(
            "{missing}; CI={} requires the real-cluster tests to run: install it with `{INSTALL_HINT}` \
             (see .ci/run)",
            ci.unwrap_or_default()
        ))
    } else {
        Verdict::Skip(format!(
            "skipped: {missing}; install it with `{INSTALL_HINT}` to run this test"
        ))
    }
}

/// What of `needs` is missing from the binaries directory `bin_dir`.
pub fn missing_in(bin_dir: &Path, needs: Needs) -> Option<Missing> {
    let initdb = bin_dir.join("initdb");
    if !initdb.is_file() {
        return Some(Missing::Server(initdb));
    }
    let library = bin_dir.join("../lib/pg_stat_statements.so");
    if needs == Needs::ServerAndStatements && !library.is_file() {
        return Some(Missing::StatementsModule(library));
    }
    None
}

/// The gate of every real-cluster test: `false` when it can run; `true` after printing why it is
/// skipped (a local run without PostgreSQL 15).
///
/// # Panics
///
/// Under `CI=true` when something is missing: that is its purpose, a test failure with the message
/// of what is missing and how to install it.
pub fn skip_without_postgres(needs: Needs) -> bool {
    let missing = missing_in(Path::new(PG_BIN_DIR), needs);
    let ci = std::env::var(CI_VARIABLE).ok();
    match verdict(missing.as_ref(), ci.as_deref()) {
        Verdict::Run => false,
        Verdict::Skip(line) => {
            println!("{line}");
            true
        }
        Verdict::Fail(message) => panic!("{message}"),
    }
}

/// The gate of every test that runs pgpool-II: like [`skip_without_postgres`], for
/// `/usr/sbin/pgpool` (`apt-get install -y pgpool2`).
///
/// # Panics
///
/// Under `CI=true` when pgpool is missing, with how to install it.
pub fn skip_without_pgpool() -> bool {
    let Err(missing) = crate::real::pgpool::installed() else {
        return false;
    };
    let ci = std::env::var(CI_VARIABLE).ok();
    if is_ci(ci.as_deref()) {
        panic!(
            "{missing}; CI={} requires the pgpool tests to run (see .ci/run)",
            ci.unwrap_or_default()
        );
    }
    println!("skipped: {missing}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Missing {
        Missing::Server(PathBuf::from("/nowhere/initdb"))
    }

    #[test]
    fn nothing_missing_runs_with_or_without_ci() {
        assert_eq!(verdict(None, None), Verdict::Run);
        assert_eq!(verdict(None, Some("true")), Verdict::Run);
    }

    #[test]
    fn a_missing_server_skips_locally_with_the_reason() {
        for ci in [None, Some(""), Some("false"), Some("0")] {
            let Verdict::Skip(line) = verdict(Some(&server()), ci) else {
                panic!("CI={ci:?} must skip");
            };
            assert!(
                line.starts_with("skipped: PostgreSQL 15 is not installed"),
                "{line}"
            );
            assert!(
                line.contains("/nowhere/initdb") && line.contains(INSTALL_HINT),
                "{line}"
            );
        }
    }

    #[test]
    fn a_missing_server_fails_under_ci_and_says_how_to_install_it() {
        for ci in ["true", "TRUE", "1"] {
            let Verdict::Fail(message) = verdict(Some(&server()), Some(ci)) else {
                panic!("CI={ci} must fail");
            };
            assert!(message.contains("/nowhere/initdb"), "{message}");
            assert!(
                message.contains("apt-get install postgresql-15"),
                "{message}"
            );
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn a_missing_statements_module_is_named() {
        let missing = Missing::StatementsModule(PathBuf::from("/nowhere/pg_stat_statements.so"));
        let Verdict::Fail(message) = verdict(Some(&missing), Some("true")) else {
            panic!("must fail under CI");
        };
        assert!(
            message.starts_with("the pg_stat_statements module"),
            "{message}"
        );
    }

    #[test]
    fn the_files_decide_what_is_missing() {
        let empty = std::env::temp_dir().join("replisim-prerequisites-none");
        assert_eq!(
            missing_in(&empty, Needs::Server),
            Some(Missing::Server(empty.join("initdb")))
        );
        // A bin directory with `initdb` but no module next to it.
        let dir =
            std::env::temp_dir().join(format!("replisim-prerequisites-{}", std::process::id()));
        let bin = dir.join("bin");
        assert!(std::fs::create_dir_all(&bin).is_ok());
        assert!(std::fs::write(bin.join("initdb"), b"").is_ok());
        assert_eq!(missing_in(&bin, Needs::Server), None);
        assert_eq!(
            missing_in(&bin, Needs::ServerAndStatements),
            Some(Missing::StatementsModule(
                bin.join("../lib/pg_stat_statements.so")
            ))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
