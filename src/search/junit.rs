//! JUnit XML: one testcase per (scenario, seed), a `failure` element for each failed run whose
//! text gives one line per failed invariant and the replay command. No times or host names, so
//! the same sweep gives the same file.

use std::fmt::Write;

use crate::search::sweep::{JobResult, SweepScenario, replay_command};

/// The JUnit document of a sweep: a `testsuite` per scenario that ran.
pub fn render(scenarios: &[SweepScenario], results: &[JobResult]) -> String {
    let failures = results.iter().filter(|r| !r.passed()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"replisim sweep\" tests=\"{}\" failures=\"{failures}\">",
        results.len()
    );
    for (index, s) in scenarios.iter().enumerate() {
        let runs: Vec<&JobResult> = results.iter().filter(|r| r.job.scenario == index).collect();
        if runs.is_empty() {
            continue;
        }
        let name = escape(&s.scenario.name);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\">",
            runs.len(),
            runs.iter().filter(|r| !r.passed()).count()
        );
        for run in runs {
            let _ = write!(
                out,
                "    <testcase classname=\"replisim.{name}\" name=\"seed {}\"",
                run.job.seed
            );
            if run.passed() {
                out.push_str("/>\n");
                continue;
            }
            let problems = run.problems();
            let first = problems.first().map_or("failed", String::as_str);
            let more = match problems.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}{more}\" type=\"invariant\">",
                escape(first)
            );
            for problem in &problems {
                let _ = writeln!(out, "{}", escape(problem));
            }
            let _ = writeln!(
                out,
                "replay: {}\n      </failure>\n    </testcase>",
                escape(&replay_command(&s.path, run.job.seed))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes text for XML attribute values and character data.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry other control characters at all.
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_messages_is_escaped() {
        assert_eq!(
            escape("p99 <= 5 & \"x\""),
            "p99 &lt;= 5 &amp; &quot;x&quot;"
        );
        assert_eq!(escape("a\u{1}b"), "a b");
    }
}
