//! `replisim overhead`: a short run on a real cluster prints one table with a row per path and
//! client count, no statement fails, and `--out` writes it with the command that measured it.

mod cli_support;

use cli_support::*;
use replisim::real::prerequisites::{Needs, is_ci, skip_without_postgres};

#[test]
fn overhead_prints_one_row_per_path_and_writes_the_table() {
    if skip_without_postgres(Needs::Server) {
        return;
    }
    // pgpool-II is measured where it is installed; CI installs it, so there it must be.
    let pgpool = replisim::real::pgpool::installed().is_ok();
    if !pgpool && is_ci(std::env::var("CI").ok().as_deref()) {
        panic!("pgpool-II is not installed; CI must install it (apt-get install -y pgpool2)");
    }
    let paths = if pgpool { "router,pgpool" } else { "router" };
    let dir = scratch("cli_overhead");
    let out = dir.join("overhead.md");
    let output = replisim(&[
        "overhead",
        "--slice",
        "0.3",
        "--rounds",
        "1",
        "--clients",
        "1,2",
        "--paths",
        paths,
        "--out",
        &out.display().to_string(),
    ]);
    let stdout = stdout_of_success(&output);
    let mut expected = vec!["direct", "router", "router, replica-1 only"];
    if pgpool {
        expected.push("pgpool-II");
    }
    for workload in ["primary-key read", "90/10 read/write"] {
        for clients in [1, 2] {
            for path in &expected {
                let row = format!("| {workload} | {clients} | {path} |");
                let line = stdout
                    .lines()
                    .find(|l| l.starts_with(&row))
                    .unwrap_or_else(|| panic!("no row {row}:\n{stdout}"));
                // Every row answered statements (ops/s above 0) and none failed (last column).
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let ops: f64 = cells[6].parse().unwrap_or(0.0);
                assert!(ops > 0.0, "{line}");
                // The servers answered them: their processes were found and spent CPU on it.
                let servers: f64 = cells[11].parse().unwrap_or(0.0);
                assert!(servers > 0.0, "servers CPU µs/op: {line}");
                assert_eq!(cells[cells.len() - 2], "0", "{line}");
            }
        }
    }
    let written = read(&out);
    assert!(
        written.contains("replisim overhead --slice 0.3"),
        "{written}"
    );
    assert!(
        written.contains("| primary-key read | 1 | direct |"),
        "{written}"
    );
}

#[test]
fn overhead_only_measures_the_one_path_it_names() {
    if skip_without_postgres(Needs::Server) {
        return;
    }
    let output = replisim(&[
        "overhead",
        "--only",
        "router-one",
        "--slice",
        "0.2",
        "--rounds",
        "1",
        "--clients",
        "2",
    ]);
    let stdout = stdout_of_success(&output);
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| workload"))
        .collect();
    assert_eq!(rows.len(), 2, "one row per workload:\n{stdout}");
    for row in rows {
        assert!(row.contains("| 2 | router, replica-1 only |"), "{row}");
    }
    // The exact statement counts `scripts/router-instructions` divides by, one per row.
    let counts: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("statements answered: "))
        .filter_map(|l| l.rsplit(": ").next()?.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2, "{stdout}");
    assert!(counts.iter().all(|&n| n > 0), "{stdout}");
}
