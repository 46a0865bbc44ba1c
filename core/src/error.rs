//! One error type for the core. `kind` decides the SQLSTATE the extension reports; `message`
//! says what failed and never contains the token or a key.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The token is malformed, forged, expired or signed by an unknown key (SQLSTATE 28000).
    InvalidToken,
    /// A setting holds a value that cannot be used (SQLSTATE 22023).
    BadConfig,
    /// Nothing is configured that could verify a token (SQLSTATE 55000).
    NotConfigured,
    /// A function argument is out of range (SQLSTATE 22023).
    InvalidArgument,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub kind: ErrorKind,
    pub message: String,
    /// An invalid token whose key is not known: a refresh of the managed keys may change that.
    pub unknown_key: bool,
}

impl AuthError {
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidToken,
            message: message.into(),
            unknown_key: false,
        }
    }
    pub fn unknown_key(message: impl Into<String>) -> Self {
        Self {
            unknown_key: true,
            ..Self::invalid_token(message)
        }
    }
    pub fn bad_config(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BadConfig,
            message: message.into(),
            unknown_key: false,
        }
    }
    pub fn not_configured(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::NotConfigured,
            message: message.into(),
            unknown_key: false,
        }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidArgument,
            message: message.into(),
            unknown_key: false,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuthError {}

pub type Result<T> = std::result::Result<T, AuthError>;
