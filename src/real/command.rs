//! Running the PostgreSQL server commands (as the `postgres` OS user when root), each with a time
//! limit, and finding or signalling a cluster's processes through `/proc`.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::real::error::ClusterError;

/// Where the PostgreSQL 15 server binaries are installed.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Bytes of a server log or command output quoted in an error message.
const TAIL_BYTES_MAX: usize = 3000;

/// How server commands are run: directly, or through `runuser -u postgres --` when the process is
/// root (PostgreSQL refuses to run as root).
#[derive(Clone, Debug)]
pub(crate) struct Runner {
    bin_dir: PathBuf,
    /// `Some((uid, gid))` of `postgres` when running as root.
    postgres_ids: Option<(u32, u32)>,
    /// `runuser`, by full path where found (root's PATH may lack /usr/sbin).
    runuser: PathBuf,
}

impl Runner {
    /// Checks the binaries and decides how to run them.
    pub(crate) fn detect(bin_dir: &Path) -> Result<Runner, ClusterError> {
        if !bin_dir.join("initdb").is_file() || !bin_dir.join("pg_ctl").is_file() {
            return Err(ClusterError::MissingBinaries {
                dir: bin_dir.to_path_buf(),
            });
        }
        // /proc/self belongs to the effective user: no unsafe geteuid needed.
        let euid = std::fs::metadata("/proc/self")
            .map_err(|e| ClusterError::io("reading /proc/self", e))?
            .uid();
        let postgres_ids = if euid == 0 {
            Some(postgres_user_ids()?)
        } else {
            None
        };
        Ok(Runner {
            bin_dir: bin_dir.to_path_buf(),
            postgres_ids,
            runuser: runuser_path(),
        })
    }

    /// Gives `path` to the user the servers run as (a no-op when not root).
    pub(crate) fn hand_over(&self, path: &Path) -> Result<(), ClusterError> {
        match self.postgres_ids {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| ClusterError::io(format!("chown postgres {}", path.display()), e)),
            None => Ok(()),
        }
    }

    /// Program and arguments of a server binary, prefixed with `runuser` when needed.
    fn argv(&self, program: &str, args: &[OsString]) -> (PathBuf, Vec<OsString>) {
        let binary = self.bin_dir.join(program);
        match self.postgres_ids {
            Some(_) => {
                let mut argv: Vec<OsString> =
                    vec!["-u".into(), "postgres".into(), "--".into(), binary.into()];
                argv.extend(args.iter().cloned());
                (self.runuser.clone(), argv)
            }
            None => (binary, args.to_vec()),
        }
    }

    /// Runs a server binary in `cwd` and returns its stdout; a failure status or the time limit is
    /// an error that quotes the command's output.
    pub(crate) async fn run(
        &self,
        program: &str,
        args: &[OsString],
        cwd: &Path,
        timeout: Duration,
    ) -> Result<String, ClusterError> {
        let (binary, argv) = self.argv(program, args);
        let command = describe(program, args);
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.args(&argv)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(ClusterError::io(format!("running `{command}`"), e)),
            Err(_) => return Err(ClusterError::CommandTimeout { command, timeout }),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ClusterError::Command {
            command,
            status: output.status.to_string(),
            output: tail(&format!("{stderr}{stdout}"), TAIL_BYTES_MAX)
                .trim()
                .to_string(),
        })
    }
}

/// `runuser`, by full path where found (root's PATH may lack /usr/sbin).
pub(crate) fn runuser_path() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

/// `uid` and `gid` of the `postgres` OS user, from /etc/passwd.
pub(crate) fn postgres_user_ids() -> Result<(u32, u32), ClusterError> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| ClusterError::NoPostgresUser {
            reason: format!("cannot read /etc/passwd: {e}"),
        })?;
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .next()
        .ok_or_else(|| ClusterError::NoPostgresUser {
            reason: "no valid `postgres` entry in /etc/passwd".to_string(),
        })
}

fn describe(program: &str, args: &[OsString]) -> String {
    let mut text = program.to_string();
    for arg in args {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The last `bytes_max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, bytes_max: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes_max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The last lines of a server log (at most a few KiB), or a note saying why it could not be read.
pub(crate) fn log_tail(log: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(log)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES_MAX as u64)))?;
        let mut bytes = Vec::new();
        file.take(TAIL_BYTES_MAX as u64).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => text.trim_end().to_string(),
        Err(e) => format!("(log unreadable: {e})"),
    }
}

/// Process ids whose command line contains `needle` (the cluster's unique directory name appears
/// in every postmaster's `-D` and in every child's title through `cluster_name`).
pub(crate) fn processes_matching(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Process ids whose parent is `parent` (from `/proc/PID/stat`).
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_in_stat(&stat))
                == Some(parent)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The parent pid in a `/proc/PID/stat` line: the second field after the command, which is in
/// parentheses and may itself hold spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` exists and has `arg` as one whole argument of its command line.
pub(crate) fn process_has_arg(pid: u32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        .unwrap_or(false)
}

/// Sends `signal` (a name such as `QUIT` or `KILL`) to `pids` with `kill(1)`, waiting a bounded
/// time without an async runtime (usable from `Drop`). Failures are ignored: the caller checks
/// `/proc` afterwards.
pub(crate) fn signal_blocking(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let mut cmd = std::process::Command::new("kill");
    cmd.arg("-s").arg(signal);
    cmd.args(pids.iter().map(|pid| pid.to_string()));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return;
    };
    // kill(1) returns at once; 200 polls of 5 ms bound a stuck one to one second.
    for _ in 0..200 {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` to `pids` with `kill(1)` under a time limit. Failures are ignored: the caller
/// checks `/proc` afterwards.
pub(crate) async fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let mut cmd = tokio::process::Command::new("kill");
    cmd.arg("-s").arg(signal);
    cmd.args(pids.iter().map(|pid| pid.to_string()));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), cmd.status()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_after_the_command_name() {
        assert_eq!(parent_in_stat("42 (pgpool: wait (x)) S 7 42 42 0"), Some(7));
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn tail_cuts_at_a_character_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
        // 'é' is two bytes: a cut inside it moves forward.
        assert_eq!(tail("aéb", 2), "b");
    }

    #[test]
    fn describe_joins_arguments() {
        let args: Vec<OsString> = vec!["-D".into(), "/tmp/x".into()];
        assert_eq!(describe("pg_ctl", &args), "pg_ctl -D /tmp/x");
    }

    #[test]
    fn log_tail_keeps_the_end_of_a_long_log() -> std::io::Result<()> {
        let path = std::env::temp_dir().join(format!("replisim-log-tail-{}", std::process::id()));
        let mut text = "early line\n".repeat(1000);
        text.push_str("FATAL:  the reason\n");
        std::fs::write(&path, &text)?;
        let tail = log_tail(&path);
        std::fs::remove_file(&path)?;
        assert!(tail.ends_with("FATAL:  the reason"), "{tail}");
        assert!(tail.len() <= TAIL_BYTES_MAX);
        assert!(log_tail(&path).starts_with("(log unreadable"));
        Ok(())
    }

    #[test]
    fn own_process_is_never_matched() {
        let me = std::process::id();
        let exe = std::env::args().next().unwrap_or_default();
        assert!(!processes_matching(&exe).contains(&me));
    }
}
