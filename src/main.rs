//! The `replisim` command: a thin shell over [`replisim::cli`].

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    replisim::cli::main()
}

/// Rust starts programs with SIGPIPE ignored, so a write to a closed pipe (`replisim sweep ... |
/// head`) fails and `println!` panics. A command-line tool should end quietly instead, as `cat`
/// does: the default action, death by SIGPIPE, is restored before anything is printed.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists; `signal` with
    // `SIG_DFL` installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

// Simulations allocate many small buffers per message; mimalloc cuts that cost noticeably.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
