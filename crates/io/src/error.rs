//! Errors that name the input, the line or row, and the column, and say what to do.

use std::fmt;

/// Where in an input a problem is: a text line (CSV, JSON Lines) or a row (Parquet, Arrow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line of a text file.
    Line(u64),
    /// A 1-based row of a columnar file.
    Row(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Row(row) => write!(f, "row {row}"),
        }
    }
}

/// A failure to read an input. Every message starts with the input's name.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input as a whole is wrong: its format, a missing column, a bad option.
    #[error("{input}: {message}")]
    Input { input: String, message: String },
    /// A line or row is wrong, perhaps one cell of it.
    #[error("{input}: {at}: {}{message}", column.as_deref().map(|c| format!("column {c}: ")).unwrap_or_default())]
    At {
        input: String,
        at: Location,
        column: Option<String>,
        message: String,
    },
    /// The operating system refused to open or read it.
    #[error("{input}: {what}: {source}")]
    Io {
        input: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ReadError {
    pub(crate) fn input(input: &str, message: impl Into<String>) -> ReadError {
        ReadError::Input {
            input: input.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn at(input: &str, at: Location, message: impl Into<String>) -> ReadError {
        ReadError::At {
            input: input.to_owned(),
            at,
            column: None,
            message: message.into(),
        }
    }

    /// A fault in one cell: the input, where, the column and what is wrong.
    pub fn cell(input: &str, at: Location, column: &str, message: impl Into<String>) -> ReadError {
        ReadError::At {
            input: input.to_owned(),
            at,
            column: Some(column.to_owned()),
            message: message.into(),
        }
    }

    /// The error with `hint` after its message (`…; hint`).
    pub(crate) fn with_hint(self, hint: &str) -> ReadError {
        match self {
            ReadError::Input { input, message } => ReadError::Input {
                input,
                message: format!("{message}; {hint}"),
            },
            ReadError::At {
                input,
                at,
                column,
                message,
            } => ReadError::At {
                input,
                at,
                column,
                message: format!("{message}; {hint}"),
            },
            io @ ReadError::Io { .. } => io,
        }
    }

    pub(crate) fn io(input: &str, what: &'static str, source: std::io::Error) -> ReadError {
        ReadError::Io {
            input: input.to_owned(),
            what,
            source,
        }
    }
}
