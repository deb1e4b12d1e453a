//! `replisim run --profile`: prints how fast the run went, and changes nothing that the run writes.

mod cli_support;

use cli_support::*;

#[test]
fn profile_prints_the_rates_and_leaves_the_reports_byte_identical() {
    let dir = scratch("profile");
    let path = write(&dir, "tiny.toml", TINY);
    let run = |out: &str, profile: bool| {
        let out = dir.join(out);
        let out_arg = out.display().to_string();
        let mut args = vec![
            "run",
            path.as_str(),
            "--no-charts",
            "--out",
            out_arg.as_str(),
        ];
        if profile {
            args.push("--profile");
        }
        let o = replisim(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        (text(&o.stdout), out)
    };
    let (plain_stdout, plain) = run("plain", false);
    let (profiled_stdout, profiled) = run("profiled", true);
    assert!(!plain_stdout.contains("profile:"), "{plain_stdout}");
    assert!(
        profiled_stdout.contains("simulated seconds per wall-second")
            && profiled_stdout.contains("operations per wall-second"),
        "{profiled_stdout}"
    );
    // Wall-clock figures differ from run to run; they must never reach a file.
    for file in ["tiny-seed1.json", "tiny-seed1.md"] {
        assert_eq!(
            read(&plain.join(file)),
            read(&profiled.join(file)),
            "{file} differs with --profile"
        );
    }
}
