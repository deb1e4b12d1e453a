//! The cluster's own SQL connections to its servers (setup, probes, fault commands), each connect
//! and statement under a time limit.

use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::real::error::ClusterError;

/// Limit of one connect, startup included.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit of one statement.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// `application_name` of the cluster's own connections, apart from the router's.
pub(crate) const ADMIN_APPLICATION_NAME: &str = "replisim-admin";
/// The superuser `initdb -U` creates.
pub(crate) const SUPERUSER: &str = "postgres";

/// A superuser connection to one node.
pub(crate) struct Admin {
    node: String,
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

impl Admin {
    /// Connects to `dbname` on the node listening on 127.0.0.1:`port`.
    pub(crate) async fn connect(
        node: &str,
        port: u16,
        dbname: &str,
    ) -> Result<Admin, ClusterError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name(ADMIN_APPLICATION_NAME)
            .connect_timeout(CONNECT_TIMEOUT);
        let what = format!("connect to 127.0.0.1:{port}/{dbname}");
        let (client, connection) =
            match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(source)) => {
                    return Err(ClusterError::Sql {
                        node: node.to_string(),
                        what,
                        source,
                    });
                }
                Err(_) => {
                    return Err(ClusterError::SqlTimeout {
                        node: node.to_string(),
                        what,
                        timeout: CONNECT_TIMEOUT,
                    });
                }
            };
        // The connection ends by itself when the client is dropped; its error, if any, surfaces
        // through the client's next statement.
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Admin {
            node: node.to_string(),
            client,
            connection,
        })
    }

    /// Runs one or more statements (simple protocol) and returns the first column of every row.
    pub(crate) async fn run(&self, sql: &str) -> Result<Vec<Option<String>>, ClusterError> {
        let messages =
            match tokio::time::timeout(QUERY_TIMEOUT, self.client.simple_query(sql)).await {
                Ok(Ok(messages)) => messages,
                Ok(Err(source)) => {
                    return Err(ClusterError::Sql {
                        node: self.node.clone(),
                        what: sql.to_string(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(ClusterError::SqlTimeout {
                        node: self.node.clone(),
                        what: sql.to_string(),
                        timeout: QUERY_TIMEOUT,
                    });
                }
            };
        Ok(messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
                _ => None,
            })
            .collect())
    }

    /// The first column of the first row, if there is one and it is not NULL.
    pub(crate) async fn value(&self, sql: &str) -> Result<Option<String>, ClusterError> {
        Ok(self.run(sql).await?.into_iter().next().flatten())
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Quotes `text` as a SQL string literal (for `ALTER SYSTEM`, which takes no parameters).
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literal_doubles_quotes() {
        assert_eq!(literal("a'b"), "'a''b'");
        assert_eq!(literal("host=127.0.0.1 port=1"), "'host=127.0.0.1 port=1'");
    }
}
