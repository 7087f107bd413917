//! The embedded store: one SQLite file, in WAL mode so readers never wait for a writer,
//! every change in one `BEGIN IMMEDIATE` transaction (taken before reading, so two writers
//! queue instead of one failing halfway).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use crate::schema::{self, Dialect};
use crate::{ModelStore, ModelSummary, NewModel, Reference, StoreError, StoredModel};

/// How long a write waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SqliteStore {
    connection: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fail = |e: rusqlite::Error| StoreError::Database {
            store: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Database {
                store: path.display().to_string(),
                message: format!("cannot create its directory {}: {e}", parent.display()),
            })?;
        }
        let mut connection = Connection::open(path).map_err(fail)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(fail)?;
        migrate(&mut connection, &path.display().to_string())?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            path: path.to_owned(),
        })
    }

    fn fail(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Database {
            store: self.describe(),
            message: e.to_string(),
        }
    }

    /// Runs `work` in one immediate transaction, committed if it returns `Ok`.
    fn write<T>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.fail(e))?;
        let value = work(&transaction)?;
        transaction.commit().map_err(|e| self.fail(e))?;
        Ok(value)
    }

    fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        work(&connection)
    }
}

fn migrate(connection: &mut Connection, store: &str) -> Result<(), StoreError> {
    let fail = |e: rusqlite::Error| StoreError::Database {
        store: store.to_owned(),
        message: format!("cannot migrate its schema: {e}"),
    };
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS mittari_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);",
        )
        .map_err(fail)?;
    let current: i64 = transaction
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM mittari_schema",
            [],
            |r| r.get(0),
        )
        .map_err(fail)?;
    if current > schema::latest() {
        return Err(StoreError::SchemaTooNew {
            store: store.to_owned(),
            found: current,
            supported: schema::latest(),
        });
    }
    for (version, sql) in schema::migrations(Dialect::Sqlite) {
        if version > current {
            transaction.execute_batch(&sql).map_err(fail)?;
            transaction
                .execute(
                    "INSERT INTO mittari_schema (version, applied_at) VALUES (?1, ?2)",
                    params![version, crate::now_micros()],
                )
                .map_err(fail)?;
        }
    }
    transaction.commit().map_err(fail)
}

fn aliases_of(connection: &Connection, name: &str, version: u64) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare_cached(
        "SELECT alias FROM model_aliases WHERE name = ?1 AND version = ?2 ORDER BY alias",
    )?;
    let rows = statement.query_map(params![name, version as i64], |r| r.get(0))?;
    rows.collect()
}

impl ModelStore for SqliteStore {
    fn put(&self, name: &str, model: &NewModel) -> Result<u64, StoreError> {
        crate::check_name(name)?;
        self.write(|tx| {
            let version: i64 = tx
                .query_row(
                    "INSERT INTO model_names (name, next_version) VALUES (?1, 2)
                     ON CONFLICT (name) DO UPDATE SET next_version = next_version + 1
                     RETURNING next_version - 1",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(|e| self.fail(e))?;
            tx.execute(
                "INSERT INTO models (name, version, created_at, created_by, metric, metric_version, abi_version,
                     library_sha256, parameters, fingerprint, statistics, state, state_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    name,
                    version,
                    crate::now_micros(),
                    model.created_by,
                    model.metric,
                    model.metric_version,
                    i64::from(model.abi_version),
                    model.library_sha256,
                    model.parameters,
                    model.fingerprint,
                    model.statistics,
                    model.state,
                    crate::state_digest(&model.state),
                ],
            )
            .map_err(|e| self.fail(e))?;
            Ok(version as u64)
        })
    }

    fn get(&self, reference: &Reference) -> Result<StoredModel, StoreError> {
        let name = reference.name();
        self.read(|connection| {
            let version: Option<i64> = match reference {
                Reference::Version(_, version) => Some(*version as i64),
                Reference::Latest(_) => connection
                    .query_row(
                        "SELECT MAX(version) FROM models WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.fail(e))?,
                Reference::Alias(_, alias) => connection
                    .query_row(
                        "SELECT version FROM model_aliases WHERE name = ?1 AND alias = ?2",
                        params![name, alias],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.fail(e))?,
            };
            let not_found = || StoreError::NotFound {
                reference: reference.to_string(),
            };
            let version = version.ok_or_else(not_found)?;
            let row = connection
                .query_row(
                    "SELECT created_at, created_by, metric, metric_version, abi_version, library_sha256,
                         parameters, fingerprint, statistics, state, state_sha256
                     FROM models WHERE name = ?1 AND version = ?2",
                    params![name, version],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            NewModel {
                                created_by: r.get(1)?,
                                metric: r.get(2)?,
                                metric_version: r.get(3)?,
                                abi_version: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                                library_sha256: r.get(5)?,
                                parameters: r.get(6)?,
                                fingerprint: r.get(7)?,
                                statistics: r.get(8)?,
                                state: r.get(9)?,
                            },
                            r.get::<_, String>(10)?,
                        ))
                    },
                )
                .optional()
                .map_err(|e| self.fail(e))?;
            let (created_at, model, expected) = row.ok_or_else(not_found)?;
            let version = version as u64;
            crate::check_digest(reference, &model.state, expected)?;
            Ok(StoredModel {
                name: name.to_owned(),
                version,
                created_at,
                aliases: aliases_of(connection, name, version).map_err(|e| self.fail(e))?,
                model,
            })
        })
    }

    fn list(&self, name: Option<&str>) -> Result<Vec<ModelSummary>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare(
                    "SELECT name, version, created_at, created_by, metric, metric_version, length(state)
                     FROM models WHERE ?1 IS NULL OR name = ?1 ORDER BY name, version",
                )
                .map_err(|e| self.fail(e))?;
            let rows = statement
                .query_map(params![name], |r| {
                    Ok(ModelSummary {
                        name: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u64,
                        created_at: r.get(2)?,
                        created_by: r.get(3)?,
                        metric: r.get(4)?,
                        metric_version: r.get(5)?,
                        state_bytes: r.get::<_, i64>(6)? as u64,
                        aliases: Vec::new(),
                    })
                })
                .map_err(|e| self.fail(e))?;
            let mut summaries = rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.fail(e))?;
            for summary in &mut summaries {
                summary.aliases = aliases_of(connection, &summary.name, summary.version)
                    .map_err(|e| self.fail(e))?;
            }
            Ok(summaries)
        })
    }

    fn delete(&self, name: &str, version: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            let aliases = aliases_of(tx, name, version).map_err(|e| self.fail(e))?;
            if !aliases.is_empty() {
                return Err(StoreError::Aliased {
                    name: name.to_owned(),
                    version,
                    aliases,
                });
            }
            let deleted = tx
                .execute(
                    "DELETE FROM models WHERE name = ?1 AND version = ?2",
                    params![name, version as i64],
                )
                .map_err(|e| self.fail(e))?;
            if deleted == 0 {
                return Err(StoreError::NotFound {
                    reference: format!("{name}@{version}"),
                });
            }
            Ok(())
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<Option<u64>, StoreError> {
        crate::check_alias(alias)?;
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT version FROM models WHERE name = ?1 AND version = ?2",
                    params![name, version as i64],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.fail(e))?;
            if exists.is_none() {
                return Err(StoreError::NotFound {
                    reference: format!("{name}@{version}"),
                });
            }
            let before: Option<i64> = tx
                .query_row(
                    "SELECT version FROM model_aliases WHERE name = ?1 AND alias = ?2",
                    params![name, alias],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.fail(e))?;
            tx.execute(
                "INSERT INTO model_aliases (name, alias, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                params![name, alias, version as i64],
            )
            .map_err(|e| self.fail(e))?;
            Ok(before.map(|v| v as u64))
        })
    }

    fn remove_alias(&self, name: &str, alias: &str) -> Result<u64, StoreError> {
        self.write(|tx| {
            let version: Option<i64> = tx
                .query_row(
                    "DELETE FROM model_aliases WHERE name = ?1 AND alias = ?2 RETURNING version",
                    params![name, alias],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.fail(e))?;
            version
                .map(|v| v as u64)
                .ok_or_else(|| StoreError::NotFound {
                    reference: format!("{name}@{alias}"),
                })
        })
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_suite_passes_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("nested/models.db").display());
        crate::testing::suite(&|| crate::open(&url).unwrap());
    }

    #[test]
    fn a_damaged_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.db");
        let store = SqliteStore::open(&path).unwrap();
        let version = store.put("clv", &crate::testing::model(b"state")).unwrap();
        let raw = Connection::open(&path).unwrap();
        raw.execute("UPDATE models SET state = x'00'", []).unwrap();
        let error = store
            .get(&Reference::Version("clv".into(), version))
            .unwrap_err();
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains("clv@1 is damaged"), "{error}");
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.db");
        drop(SqliteStore::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.execute(
            "INSERT INTO mittari_schema (version, applied_at) VALUES (99, 0)",
            [],
        )
        .unwrap();
        let Err(error) = SqliteStore::open(&path) else {
            panic!("opened");
        };
        assert!(
            error
                .to_string()
                .contains("schema version 99, newer than this build's 1"),
            "{error}"
        );
    }
}
