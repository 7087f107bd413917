//! The store's schema, as numbered migrations each backend applies in order, once, recording
//! each in `mittari_schema` in the same transaction.
//!
//! Versions are counted per name in `model_names.next_version`, never from the models
//! left: a deleted version's number is not given again. Aliases refer to their version with a
//! foreign key that forbids deleting it, so no alias can point at nothing.

/// The two SQL dialects the migrations are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The migrations in order: (version, SQL). A store at a higher version than the last one
/// here was written by a newer build and is refused rather than misread.
pub(crate) fn migrations(dialect: Dialect) -> Vec<(i64, String)> {
    let bytes = match dialect {
        Dialect::Sqlite => "BLOB",
        Dialect::Postgres => "BYTEA",
    };
    vec![(
        1,
        format!(
            "CREATE TABLE model_names (
                 name TEXT PRIMARY KEY,
                 next_version BIGINT NOT NULL
             );
             CREATE TABLE models (
                 name TEXT NOT NULL REFERENCES model_names (name),
                 version BIGINT NOT NULL,
                 created_at BIGINT NOT NULL,
                 created_by TEXT NOT NULL,
                 metric TEXT NOT NULL,
                 metric_version TEXT NOT NULL,
                 abi_version BIGINT NOT NULL,
                 library_sha256 TEXT NOT NULL,
                 parameters TEXT NOT NULL,
                 fingerprint TEXT NOT NULL,
                 statistics TEXT NOT NULL,
                 state {bytes} NOT NULL,
                 state_sha256 TEXT NOT NULL,
                 PRIMARY KEY (name, version)
             );
             CREATE TABLE model_aliases (
                 name TEXT NOT NULL,
                 alias TEXT NOT NULL,
                 version BIGINT NOT NULL,
                 PRIMARY KEY (name, alias),
                 FOREIGN KEY (name, version) REFERENCES models (name, version) ON DELETE RESTRICT
             );"
        ),
    )]
}

/// The latest schema version this build knows.
pub(crate) fn latest() -> i64 {
    migrations(Dialect::Sqlite).last().map_or(0, |(v, _)| *v)
}
