//! The `replisim` command: a thin shell over [`replisim::cli`].

fn main() -> std::process::ExitCode {
    replisim::cli::main()
}

// Simulations allocate many small buffers per message; mimalloc cuts that cost noticeably.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
