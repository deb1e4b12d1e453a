//! `replisim check`: validates scenario files without running them.

use std::path::PathBuf;

use super::Outcome;
use crate::scenario;

pub(super) fn check_files(paths: &[PathBuf]) -> Outcome {
    let mut first_error = None;
    for path in paths {
        match scenario::load(path) {
            Ok(s) => println!("ok   {} ({})", path.display(), s.name),
            Err(e) => {
                println!("BAD  {e}");
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    match first_error {
        None => Outcome::Passed,
        Some(e) => Outcome::BadInput(e),
    }
}
