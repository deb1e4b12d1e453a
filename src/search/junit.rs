//! JUnit XML: one testcase per (scenario, seed), a failure element for each failed run.
