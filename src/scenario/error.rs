//! Why a scenario file was refused, in one line that names the file and, where known, the line and
//! column: `scenarios/x.toml:12:5: fault 2: target "replica-9" is not a node (nodes: primary-1)`.

use std::ops::Range;

/// What kind of problem a [`ScenarioError`] reports. Every kind is bad input (exit code 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioErrorKind {
    /// The file could not be read: check the path, its permissions and that it is UTF-8.
    Unreadable,
    /// Not valid TOML, an unknown key, or a value of the wrong type: fix the text at the position.
    Syntax,
    /// A value out of range or an inconsistent topology or schedule: fix the value at the position.
    Invalid,
}

/// A 1-based line and column; the column counts characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the end of the text).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        // A span from the parser always starts on a character boundary; stay safe if one does not.
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// A scenario file that cannot be used. Its `Display` is one line: `file:line:col: message`, or
/// `file: message` when no position is known.
#[derive(thiserror::Error, Debug)]
#[error("{file}{}: {message}", position_suffix(.position))]
pub struct ScenarioError {
    file: String,
    position: Option<Position>,
    kind: ScenarioErrorKind,
    message: String,
}

impl ScenarioError {
    /// The file could not be read; the I/O error's text becomes part of the one-line message.
    pub(crate) fn unreadable(file: &str, source: std::io::Error) -> ScenarioError {
        ScenarioError {
            file: file.to_owned(),
            position: None,
            kind: ScenarioErrorKind::Unreadable,
            message: format!("cannot read the scenario file: {source}"),
        }
    }

    /// Places an [`Issue`] found in `text` (the contents of `file`).
    pub(crate) fn from_issue(file: &str, text: &str, issue: Issue) -> ScenarioError {
        ScenarioError {
            file: file.to_owned(),
            position: issue.offset.map(|offset| Position::of_offset(text, offset)),
            kind: issue.kind,
            message: one_line(&issue.message),
        }
    }

    /// The file name as given to `load` or `parse`.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where in the file the problem is, if known.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ScenarioErrorKind {
        self.kind
    }

    /// The message without file and position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `:line:col` when the position is known.
fn position_suffix(position: &Option<Position>) -> String {
    position.map_or_else(String::new, |p| format!(":{}:{}", p.line, p.column))
}

/// Joins a multi-line message so that the error stays one line.
fn one_line(message: &str) -> String {
    message
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A problem found while parsing or validating, located by byte offset; the file name and the
/// line:column are added by [`ScenarioError::from_issue`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Issue {
    /// What kind of problem.
    pub(crate) kind: ScenarioErrorKind,
    /// One-line message.
    pub(crate) message: String,
    /// Byte offset in the file, if known.
    pub(crate) offset: Option<usize>,
}

impl Issue {
    /// An invalid value at `span`.
    pub(crate) fn at(span: Range<usize>, message: impl Into<String>) -> Issue {
        Issue {
            kind: ScenarioErrorKind::Invalid,
            message: message.into(),
            offset: Some(span.start),
        }
    }

    /// An invalid value whose position is unknown (e.g. a missing top-level key or a default).
    pub(crate) fn nowhere(message: impl Into<String>) -> Issue {
        Issue {
            kind: ScenarioErrorKind::Invalid,
            message: message.into(),
            offset: None,
        }
    }

    /// The same issue with `context` (e.g. `fault 2`) put in front of its message.
    pub(crate) fn within(mut self, context: &str) -> Issue {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<toml::de::Error> for Issue {
    fn from(error: toml::de::Error) -> Issue {
        Issue {
            kind: ScenarioErrorKind::Syntax,
            message: error.message().to_owned(),
            offset: error.span().map(|span| span.start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nname = \"é\" x\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 6),
            Position { line: 2, column: 1 }
        );
        let x = text.find('x').expect("x is in the text");
        assert_eq!(
            Position::of_offset(text, x),
            Position {
                line: 2,
                column: 12
            }
        );
        assert_eq!(
            Position::of_offset(text, 10_000),
            Position { line: 3, column: 1 }
        );
    }

    #[test]
    fn display_is_one_line_with_or_without_a_position() {
        let text = "name = \"x\"\n\nduration = 5\n";
        let issue = Issue::at(19..20, "duration: bad\nsecond line");
        let error = ScenarioError::from_issue("s.toml", text, issue);
        assert_eq!(error.to_string(), "s.toml:3:8: duration: bad; second line");
        assert_eq!(error.kind(), ScenarioErrorKind::Invalid);
        let error = ScenarioError::from_issue("s.toml", text, Issue::nowhere("missing `name`"));
        assert_eq!(error.to_string(), "s.toml: missing `name`");
        assert_eq!(error.position(), None);
    }
}
