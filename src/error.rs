//! The one error type of hookline and its mapping to GraphQL error codes.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql converts any `Display`
//! value into an error that carries its text and no code, so every conversion into a GraphQL
//! error goes through [`From<AppError>`] below, which sets `extensions.code` and hides
//! internal details.

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, SqlErr};

/// What went wrong, classified once. Messages of the client-facing variants are sent to the
/// client as they are: they say what to fix.
#[derive(Debug)]
pub enum AppError {
    /// The input is wrong; the message names the field and what to fix.
    Validation(String),
    /// An input field is wrong: the message says what to fix, `field` is its input path
    /// (`customHeaders.X-Team`, `payload`) for a form to place it, and a template error has
    /// its line and column.
    Invalid(Box<InvalidField>),
    NotFound(String),
    /// The request clashes with what is stored (a duplicate name, a node that still has children).
    Conflict(String),
    Forbidden(String),
    Unauthenticated(String),
    /// The database cannot take the request right now (it is full, or its connection was
    /// lost); the message says which and what to do. Trying again later may succeed.
    Unavailable(String),
    /// The caller's token made more mutations than its rate allows; it may try again after
    /// this many seconds.
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// Anything else; the detail is logged, never sent.
    Internal(String),
    /// One input of a batch mutation was refused (and with it the whole call).
    InBatch {
        index: usize,
        code: &'static str,
        message: String,
        /// The refused field inside the input (`inputs[3].name`), with a template's line and
        /// column.
        place: Option<Place>,
    },
}

/// Where in the input an error is: the field's path, and a template's line and column.
pub type Place = (String, Option<usize>, Option<usize>);

pub type AppResult<T> = Result<T, AppError>;

/// The place of a refused input, sent in `extensions` beside the message.
#[derive(Debug)]
pub struct InvalidField {
    pub field: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl AppError {
    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation(message.into())
    }

    /// The input at `field` (an input path such as `customHeaders.X-Team`) is refused; the
    /// message is sent as it is and should name the field too.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(Box::new(InvalidField { field: field.into(), message: message.into(), line: None, column: None }))
    }

    /// A template at `field` is refused at this line and column (1-based) when known.
    pub fn invalid_template(
        field: impl Into<String>,
        message: impl Into<String>,
        line: Option<usize>,
        column: Option<usize>,
    ) -> Self {
        Self::Invalid(Box::new(InvalidField { field: field.into(), message: message.into(), line, column }))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::Internal(detail.into())
    }

    /// A write whose transaction failed after it ran (the commit or a savepoint release): the
    /// detail is logged; the client learns that the database did not confirm it.
    pub fn not_confirmed(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::error!(%detail, "a write was not confirmed by the database");
        Self::Unavailable(NOT_CONFIRMED.into())
    }

    /// A write that never ran because its batch could not start or was cut off.
    pub fn not_run() -> Self {
        Self::Unavailable(NOT_RUN.into())
    }

    /// This error, as the refusal of input `index` of a batch (`inputs[index]: …`).
    pub fn at_index(self, index: usize) -> Self {
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, index, "internal error in a batch input");
        }
        let place = self.place().map(|(field, line, column)| (format!("inputs[{index}].{field}"), line, column));
        Self::InBatch { index, code: self.code(), message: format!("inputs[{index}]: {}", self.message()), place }
    }

    /// The input field this error names, for `extensions.field` (and `line`, `column`).
    fn place(&self) -> Option<Place> {
        match self {
            Self::Validation(message) => field_named_by(message).map(|field| (field.to_owned(), None, None)),
            Self::Invalid(invalid) => Some((invalid.field.clone(), invalid.line, invalid.column)),
            Self::InBatch { place, .. } => place.clone(),
            _ => None,
        }
    }

    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) | Self::Invalid(_) => "VALIDATION",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Internal(_) => "INTERNAL",
            Self::InBatch { code, .. } => code,
        }
    }

    /// The text a client may see.
    pub fn message(&self) -> &str {
        match self {
            Self::Validation(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::Forbidden(m)
            | Self::Unauthenticated(m)
            | Self::Unavailable(m)
            | Self::RateLimited { message: m, .. }
            | Self::InBatch { message: m, .. } => m,
            Self::Invalid(invalid) => &invalid.message,
            Self::Internal(_) => "internal error; the server log has the details",
        }
    }
}

/// The database file reached `HOOKLINE_SQLITE_MAX_SIZE` (or its disk is full).
pub const DATABASE_FULL: &str = "the database is full (HOOKLINE_SQLITE_MAX_SIZE, or its disk): nothing was changed; free space \
     (cleanQueuedWebhooks, purgeItem) or raise the limit, then try again";
/// The connection to the database was lost or cannot be opened.
pub const DATABASE_UNREACHABLE: &str = "the database cannot be reached right now (its connection was lost); the \
     request may not have been carried out: check, then try again";
const NOT_CONFIRMED: &str = "the database did not confirm the write (its connection was lost, or it is full); it \
     may not have been stored: check, then try again";
const NOT_RUN: &str =
    "the database could not take the write (its connection was lost, or it is full); nothing was stored: try again";

/// Why the database cannot serve a request although the request is fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTrouble {
    /// `SQLITE_FULL`: the size limit (`PRAGMA max_page_count`) or the disk.
    Full,
    /// The connection broke, or none can be opened.
    Unreachable,
}

/// Classifies the database errors that are the database's state, not the request's.
pub fn db_trouble(err: &DbErr) -> Option<DbTrouble> {
    use sea_orm::{ConnAcquireErr, RuntimeErr, sqlx::Error};
    let sqlx = match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            return Some(DbTrouble::Unreachable);
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::Conn(_) => return Some(DbTrouble::Unreachable),
        _ => return None,
    };
    match &**sqlx {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => Some(DbTrouble::Unreachable),
        Error::Database(db) => match db.code().as_deref() {
            // SQLite's SQLITE_FULL (no extended codes).
            Some("13") if db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() => {
                Some(DbTrouble::Full)
            }
            // PostgreSQL: connection exceptions (class 08), the server shutting down or
            // terminating the session (57P01-57P03), no disk space (53100).
            Some(code) if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") => {
                Some(DbTrouble::Unreachable)
            }
            Some("53100") => Some(DbTrouble::Full),
            _ => None,
        },
        _ => None,
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match db_trouble(&err) {
            Some(DbTrouble::Full) => {
                tracing::warn!(%err, "the database is full");
                return Self::Unavailable(DATABASE_FULL.into());
            }
            Some(DbTrouble::Unreachable) => {
                tracing::warn!(%err, "the database cannot be reached");
                return Self::Unavailable(DATABASE_UNREACHABLE.into());
            }
            None => {}
        }
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                Self::Conflict("a record with the same unique key already exists".into())
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => Self::Conflict(
                "the change would leave a reference to a record that does not exist, or remove one that is still referenced"
                    .into(),
            ),
            _ => Self::Internal(format!("database: {err}")),
        }
    }
}

/// The input field a validation message starts with (`name: must not be empty`), which every
/// message of a refused input field names first.
fn field_named_by(message: &str) -> Option<&str> {
    let (field, _) = message.split_once(": ")?;
    let mut chars = field.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_fits = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']'));
    (starts_well && rest_fits && field.len() <= 200).then_some(field)
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        if let AppError::Internal(detail) = &err {
            tracing::error!(%detail, "internal error");
        }
        let code = err.code();
        let index = match &err {
            AppError::InBatch { index, .. } => Some(*index),
            _ => None,
        };
        let retry_after = match &err {
            AppError::RateLimited { retry_after_seconds, .. } => Some(*retry_after_seconds),
            _ => None,
        };
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(index) = index {
                ext.set("index", index);
            }
            if let Some(seconds) = retry_after {
                ext.set("retryAfterSeconds", seconds);
            }
            if let Some((field, line, column)) = err.place() {
                ext.set("field", field);
                if let Some(line) = line {
                    ext.set("line", line);
                }
                if let Some(column) = column {
                    ext.set("column", column);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::*;

    fn sqlx(err: sea_orm::sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
    }

    #[test]
    fn a_lost_connection_is_unavailable_with_a_clear_message() {
        for err in [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            sqlx(sea_orm::sqlx::Error::PoolTimedOut),
            sqlx(sea_orm::sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::BrokenPipe))),
        ] {
            assert_eq!(db_trouble(&err), Some(DbTrouble::Unreachable), "{err}");
            let app = AppError::from(err);
            assert_eq!((app.code(), app.message()), ("UNAVAILABLE", DATABASE_UNREACHABLE));
        }
    }

    #[test]
    fn other_database_errors_stay_internal() {
        for err in [DbErr::Custom("boom".into()), sqlx(sea_orm::sqlx::Error::RowNotFound)] {
            assert_eq!(db_trouble(&err), None, "{err}");
            assert_eq!(AppError::from(err).code(), "INTERNAL");
        }
    }

    #[test]
    fn writes_that_did_not_commit_say_whether_they_may_be_stored() {
        assert!(AppError::not_run().message().contains("nothing was stored"));
        assert!(AppError::not_confirmed("detail").message().contains("may not have been stored"));
        assert!(!AppError::not_confirmed("secret detail").message().contains("secret detail"));
    }

    #[test]
    fn a_validation_message_names_its_field() {
        assert_eq!(field_named_by("name: must not be empty"), Some("name"));
        assert_eq!(field_named_by("customHeaders.X-Team: must be a string"), Some("customHeaders.X-Team"));
        assert_eq!(field_named_by("the body is not JSON: x"), None);
        assert_eq!(field_named_by("no field here"), None);
    }
}
