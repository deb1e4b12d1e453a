//! Shared pieces of the command-line tests: running the built binary and scratch files for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `replisim` with `args`.
pub fn replisim<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_replisim"))
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run replisim: {e}"),
    }
}

/// A fresh, empty directory for one test under cargo's temporary target directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("{}: {e}", dir.display());
    }
    dir
}

/// Writes `text` to `dir/file`; returns the path.
pub fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("{}: {e}", path.display());
    }
    path.display().to_string()
}

/// The standard output of a run that must have exited 0; both outputs are shown if it did not.
pub fn stdout_of_success(output: &Output) -> String {
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );
    stdout
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads a file the run should have written.
pub fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// The smallest useful scenario: one primary, one replica, four clients, two seconds.
pub const TINY: &str = r#"
name = "tiny"
duration = "2s"
[[shard]]
name = "s1"
orgs = [0, 100]
primary = "primary-1"
replicas = ["replica-1"]
[workload]
clients = 4
think_time = "10ms"
orgs = 100
[[invariant]]
kind = "writes_only_primary"
"#;
