//! The same seed in a separate process: report and trace compared, the first difference named.
