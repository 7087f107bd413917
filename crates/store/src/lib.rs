//! Fitted models as named, versioned resources: what lets a service fit once and score
//! anywhere, again and again, with the same answer.
//!
//! A model is stored under a name (`clv-eu`) with a version the store assigns (1, 2, …; never
//! reused, so a caller pinned to `clv-eu@3` can never get another model under that
//! reference), and callers may pin an alias an admin moves (`clv-eu@production`). Each
//! version keeps what the plugin needs to score with it (its state, opaque bytes the plugin
//! versions itself) and what a reader needs to trust it: the metric and its version, the
//! plugin ABI and library digest, the request's parameters, the input's fingerprint and the
//! fit's statistics, who fitted it and when. The state's SHA-256 is kept beside it and checked
//! on every read, so a damaged row is an error, never a silently different model.
//!
//! Two backends pass one test suite ([`testing::suite`]): SQLite, embedded and needing no
//! set-up, and PostgreSQL, for servers that run as several replicas (a model fitted on one is
//! scored on another). Both keep the schema in versioned migrations, write a model in one
//! transaction (a crash leaves no half model), assign versions atomically (concurrent fits of
//! one name get distinct versions) and refuse to delete a version an alias points at.

mod postgres;
mod reference;
mod schema;
mod sqlite;
#[doc(hidden)]
pub mod testing;

pub use reference::{Reference, check_alias, check_name};

/// What a fit hands the store: everything but the name, version and time, which the store
/// assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewModel {
    /// The metric that fitted it (`clv`) and its version.
    pub metric: String,
    pub metric_version: String,
    /// The plugin ABI version and the SHA-256 of the library that fitted it (hex).
    pub abi_version: u32,
    pub library_sha256: String,
    /// The request's parameters, as JSON.
    pub parameters: String,
    /// The input's fingerprint (rows, customers, time span, a hash of the summary), as JSON.
    pub fingerprint: String,
    /// The fit's statistics (log-likelihood, parameters, standard errors), as JSON.
    pub statistics: String,
    /// The plugin's fitted state: bytes only the plugin reads.
    pub state: Vec<u8>,
    /// Who fitted it: the caller's token name, or the local user for the CLI.
    pub created_by: String,
}

/// A stored model, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    pub name: String,
    pub version: u64,
    /// Microseconds since the Unix epoch, UTC.
    pub created_at: i64,
    pub model: NewModel,
    /// The aliases that point at this version, sorted.
    pub aliases: Vec<String>,
}

/// One version in a listing: what it is, without its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    pub name: String,
    pub version: u64,
    pub created_at: i64,
    pub created_by: String,
    pub metric: String,
    pub metric_version: String,
    pub state_bytes: u64,
    pub aliases: Vec<String>,
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no model {reference}")]
    NotFound { reference: String },
    #[error(
        "model {name}@{version} is what {} {} {} to; move or remove {} first",
        if aliases.len() == 1 { "alias" } else { "aliases" },
        aliases.join(", "),
        if aliases.len() == 1 { "points" } else { "point" },
        if aliases.len() == 1 { "it" } else { "them" }
    )]
    Aliased {
        name: String,
        version: u64,
        aliases: Vec<String>,
    },
    #[error("{0}")]
    InvalidReference(String),
    #[error(
        "the model store {store} has schema version {found}, newer than this build's {supported}; use a newer mittari"
    )]
    SchemaTooNew {
        store: String,
        found: i64,
        supported: i64,
    },
    #[error(
        "model {reference} is damaged: its state's SHA-256 is {found}, not the {expected} it was stored with"
    )]
    Damaged {
        reference: String,
        expected: String,
        found: String,
    },
    #[error("the model store {store} fails: {message}")]
    Database { store: String, message: String },
    #[error(
        "{0:?} is not a model store; give sqlite:///PATH (a file, created if missing) or postgres://USER@HOST/DB"
    )]
    UnknownUrl(String),
}

/// A place fitted models are kept. Every method is one transaction.
pub trait ModelStore: Send + Sync {
    /// Stores `model` as the next version of `name` and returns that version.
    fn put(&self, name: &str, model: &NewModel) -> Result<u64, StoreError>;
    /// The model `reference` names: a version, an alias, or the latest version.
    fn get(&self, reference: &Reference) -> Result<StoredModel, StoreError>;
    /// Every version of `name`, or of every model; by name, then version.
    fn list(&self, name: Option<&str>) -> Result<Vec<ModelSummary>, StoreError>;
    /// Deletes one version; refused while an alias points at it.
    fn delete(&self, name: &str, version: u64) -> Result<(), StoreError>;
    /// Points `alias` of `name` at `version`; returns the version it pointed at before.
    fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<Option<u64>, StoreError>;
    /// Removes `alias` of `name`; returns the version it pointed at.
    fn remove_alias(&self, name: &str, alias: &str) -> Result<u64, StoreError>;
    /// The store as errors and logs name it: the file, or the URL without its password.
    fn describe(&self) -> String;
}

/// Checks that `url` names a store this build can open, without opening it: for validating
/// a configuration once, at load.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => Ok(()),
        Some(_) => Err(StoreError::UnknownUrl(url.to_owned())),
        None if mittari_io::is_postgres_url(url) => {
            url.parse::<::postgres::Config>().map(|_| ()).map_err(|e| {
                StoreError::InvalidReference(format!(
                    "{} is not a PostgreSQL connection string: {e}",
                    mittari_io::redact_url(url)
                ))
            })
        }
        None => Err(StoreError::UnknownUrl(mittari_io::redact_url(url))),
    }
}

/// Opens (and, where needed, creates and migrates) the store `url` names:
/// `sqlite:///var/lib/mittari/models.db`, `sqlite://relative/path.db`, or `postgres://…`.
pub fn open(url: &str) -> Result<Box<dyn ModelStore>, StoreError> {
    check_url(url)?;
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::UnknownUrl(url.to_owned()));
        }
        return Ok(Box::new(sqlite::SqliteStore::open(std::path::Path::new(
            path,
        ))?));
    }
    if mittari_io::is_postgres_url(url) {
        return Ok(Box::new(postgres::PostgresStore::open(url)?));
    }
    Err(StoreError::UnknownUrl(mittari_io::redact_url(url)))
}

/// The hex SHA-256 of a model's state, as the store keeps it beside the state and an export
/// carries it.
pub fn state_digest(state: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(state)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Refuses a state whose digest is not the one stored with it.
pub(crate) fn check_digest(
    reference: &Reference,
    state: &[u8],
    expected: String,
) -> Result<(), StoreError> {
    let found = state_digest(state);
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::Damaged {
            reference: reference.to_string(),
            expected,
            found,
        })
    }
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
