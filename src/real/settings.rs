//! Extra server settings for every node of a cluster (`shared_preload_libraries`, logging, ...),
//! checked before anything starts so that one cannot break the settings the cluster itself relies on.

use std::collections::BTreeMap;

use crate::real::error::ClusterError;
use crate::real::sql::literal;

/// Settings the cluster sets itself and needs as they are: replication, addresses, process titles.
const RESERVED: [&str; 12] = [
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "cluster_name",
    "wal_level",
    "max_wal_senders",
    "hot_standby",
    "primary_conninfo",
    "data_directory",
    "hba_file",
    "ident_file",
    "config_file",
];

/// Longest setting name accepted (PostgreSQL's own limit on identifiers is 63 bytes).
const NAME_LEN_MAX: usize = 63;
/// Longest setting value accepted.
const VALUE_LEN_MAX: usize = 1024;

/// Extra `postgresql.conf` settings, written on the primary before it first starts; replicas copy
/// them with their base backup. Empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSettings {
    values: BTreeMap<String, String>,
}

impl ServerSettings {
    /// No extra settings.
    pub fn new() -> ServerSettings {
        ServerSettings::default()
    }

    /// Sets `name` to `value` (given unquoted, e.g. `("shared_preload_libraries",
    /// "pg_stat_statements")`); a later call for the same name wins. Checked by
    /// [`ServerSettings::validate`].
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Checks every name (lower-case letters, digits, `_` and `.`, not one the cluster sets itself)
    /// and value (printable, at most 1024 bytes).
    pub fn validate(&self) -> Result<(), ClusterError> {
        for (name, value) in &self.values {
            let plain = !name.is_empty()
                && name.len() <= NAME_LEN_MAX
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if !plain {
                return Err(ClusterError::InvalidSpec(format!(
                    "setting name `{name}`: use 1-{NAME_LEN_MAX} characters of [a-z0-9_.]"
                )));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(ClusterError::InvalidSpec(format!(
                    "setting `{name}` is managed by the cluster and cannot be overridden"
                )));
            }
            if value.len() > VALUE_LEN_MAX || value.chars().any(char::is_control) {
                return Err(ClusterError::InvalidSpec(format!(
                    "setting `{name}`: the value must be at most {VALUE_LEN_MAX} bytes without \
                     control characters"
                )));
            }
        }
        Ok(())
    }

    /// The lines to append to `postgresql.conf`, values quoted; empty when there are none.
    pub(crate) fn config_text(&self) -> String {
        if self.values.is_empty() {
            return String::new();
        }
        let mut text = String::from("\n# replisim: extra settings\n");
        for (name, value) in &self.values {
            text.push_str(&format!(
                "{name} = {}\n",
                literal(&value.replace('\\', "\\\\"))
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_quoted_in_name_order() {
        let mut settings = ServerSettings::new();
        settings
            .set("shared_preload_libraries", "pg_stat_statements")
            .set("log_line_prefix", "%m [%p] it's \\here")
            .set(
                "shared_preload_libraries",
                "pg_stat_statements,auto_explain",
            );
        assert!(settings.validate().is_ok());
        assert_eq!(
            settings.config_text(),
            "\n# replisim: extra settings\n\
             log_line_prefix = '%m [%p] it''s \\\\here'\n\
             shared_preload_libraries = 'pg_stat_statements,auto_explain'\n"
        );
    }

    #[test]
    fn nothing_is_written_without_settings() {
        let settings = ServerSettings::new();
        assert!(settings.is_empty());
        assert_eq!(settings.config_text(), "");
    }

    #[test]
    fn bad_or_reserved_settings_are_refused() {
        let refused = |name: &str, value: &str| {
            let mut settings = ServerSettings::new();
            settings.set(name, value);
            settings.validate().is_err()
        };
        assert!(refused("port", "5432"));
        assert!(refused("hot_standby", "off"));
        assert!(refused("Work_Mem", "4MB"));
        assert!(refused("work_mem = 1; port", "4MB"));
        assert!(refused("", "x"));
        assert!(refused("work_mem", "4MB\nport = 1"));
        assert!(refused("work_mem", &"x".repeat(VALUE_LEN_MAX + 1)));
        assert!(!refused("pg_stat_statements.track", "all"));
    }
}
