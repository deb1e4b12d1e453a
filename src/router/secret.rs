//! A password that never shows itself: `Debug` prints a placeholder and there is no `Display`, so
//! it cannot reach a log line, an error message, a report or a printed command by accident. The
//! one way to read it is [`Password::expose`], called where it is handed to the PostgreSQL client.

use std::fmt;

/// A database password.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself, for the PostgreSQL client's login and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<String> for Password {
    fn from(password: String) -> Password {
        Password(password)
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Password {
        Password(password.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_password() {
        let p = Password::new("hunter2-s3cret");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert_eq!(
            format!("{:#?}", Some(p.clone())).matches("s3cret").count(),
            0
        );
        assert_eq!(p.expose(), "hunter2-s3cret");
    }
}
