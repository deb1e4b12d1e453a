//! Reports: JSON, Markdown and the printed summary.
