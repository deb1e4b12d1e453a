//! The `replisim` command: a thin shell over [`replisim::cli`].

fn main() -> std::process::ExitCode {
    replisim::cli::main()
}
