//! `replisim run` writes SVG charts beside its reports, links them from the Markdown report, gives
//! the same bytes for the same seed, and writes none with `--no-charts`.

mod cli_support;

use std::path::Path;

use cli_support::*;

/// A partition of replica-2, healed; shared with the charts' unit tests.
const PARTITION: &str = include_str!("charts/partition.toml");

const CHARTS: [&str; 3] = ["latency", "nodes", "failover"];

fn run(dir: &Path, scenario: &str, extra: &[&str]) {
    let out = dir.join("out").display().to_string();
    let mut args = vec!["run", scenario, "--seed", "3", "--out", &out, "--quiet"];
    args.extend_from_slice(extra);
    let o = replisim(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

fn chart_path(dir: &Path, kind: &str) -> std::path::PathBuf {
    dir.join("out").join(format!("charts-seed3-{kind}.svg"))
}

#[test]
fn run_writes_every_chart_and_links_it_from_the_markdown() {
    let dir = scratch("charts_written");
    let scenario = write(&dir, "charts.toml", PARTITION);
    run(&dir, &scenario, &[]);
    for kind in CHARTS {
        let svg = read(&chart_path(&dir, kind));
        assert!(
            svg.starts_with("<svg"),
            "{kind}: {}",
            &svg[..svg.len().min(80)]
        );
        assert!(
            svg.contains("partition replica-2"),
            "{kind} lacks the fault label"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(dir.join("out"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "files written aside were left: {leftovers:?}"
    );
    let md = read(&dir.join("out").join("charts-seed3.md"));
    for kind in CHARTS {
        let link = format!("![{kind}](charts-seed3-{kind}.svg)");
        assert!(md.contains(&link), "no {link} in\n{md}");
    }
}

#[test]
fn the_same_seed_in_another_process_gives_the_same_bytes() {
    let first = scratch("charts_first");
    let second = scratch("charts_second");
    let scenario = write(&first, "charts.toml", PARTITION);
    run(&first, &scenario, &[]);
    run(&second, &scenario, &[]);
    for kind in CHARTS {
        let a = read(&chart_path(&first, kind));
        let b = read(&chart_path(&second, kind));
        assert!(a == b, "{kind} differs between two runs of seed 3");
    }
}

#[test]
fn no_charts_writes_no_svg_and_links_none() {
    let dir = scratch("charts_none");
    let scenario = write(&dir, "charts.toml", PARTITION);
    run(&dir, &scenario, &["--no-charts"]);
    let written: Vec<String> = match std::fs::read_dir(dir.join("out")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => panic!("{e}"),
    };
    assert!(
        written.iter().any(|f| f == "charts-seed3.json"),
        "{written:?}"
    );
    assert!(!written.iter().any(|f| f.ends_with(".svg")), "{written:?}");
    let md = read(&dir.join("out").join("charts-seed3.md"));
    assert!(!md.contains(".svg"), "{md}");
    assert!(!md.contains("## Charts"), "{md}");
}
