//! The shared store: PostgreSQL, for servers that run as several replicas. Every change is
//! one transaction; versions come from one atomic upsert, so replicas fitting one name at
//! once get distinct versions; the schema is migrated under an advisory lock, so replicas
//! starting together migrate it once.

use std::sync::Mutex;

use postgres::Client;

use crate::schema::{self, Dialect};
use crate::{ModelStore, ModelSummary, NewModel, Reference, StoreError, StoredModel};

/// The advisory lock key the migrations hold ("mittari" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x006d_6974_7461_7269;

pub(crate) struct PostgresStore {
    client: Mutex<Client>,
    /// The URL without its password.
    name: String,
}

impl PostgresStore {
    pub(crate) fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let name = mittari_io::redact_url(url);
        let mut client =
            mittari_io::postgres_client(url).map_err(|message| StoreError::Database {
                store: name.clone(),
                message,
            })?;
        migrate(&mut client, &name)?;
        Ok(PostgresStore {
            client: Mutex::new(client),
            name,
        })
    }

    fn fail(&self, e: &postgres::Error) -> StoreError {
        StoreError::Database {
            store: self.name.clone(),
            message: describe(e),
        }
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut transaction = client.transaction().map_err(|e| self.fail(&e))?;
        let value = work(&mut transaction)?;
        transaction.commit().map_err(|e| self.fail(&e))?;
        Ok(value)
    }
}

/// The server's message, with its detail where it gives one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}

fn migrate(client: &mut Client, store: &str) -> Result<(), StoreError> {
    let fail = |e: postgres::Error| StoreError::Database {
        store: store.to_owned(),
        message: format!("cannot migrate its schema: {}", describe(&e)),
    };
    let mut transaction = client.transaction().map_err(fail)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(fail)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS mittari_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);",
        )
        .map_err(fail)?;
    let current: i64 = transaction
        .query_one("SELECT COALESCE(MAX(version), 0) FROM mittari_schema", &[])
        .map_err(fail)?
        .get(0);
    if current > schema::latest() {
        return Err(StoreError::SchemaTooNew {
            store: store.to_owned(),
            found: current,
            supported: schema::latest(),
        });
    }
    for (version, sql) in schema::migrations(Dialect::Postgres) {
        if version > current {
            transaction.batch_execute(&sql).map_err(fail)?;
            transaction
                .execute(
                    "INSERT INTO mittari_schema (version, applied_at) VALUES ($1, $2)",
                    &[&version, &crate::now_micros()],
                )
                .map_err(fail)?;
        }
    }
    transaction.commit().map_err(fail)
}

fn aliases_of(
    transaction: &mut postgres::Transaction<'_>,
    name: &str,
    version: i64,
) -> Result<Vec<String>, postgres::Error> {
    Ok(transaction
        .query(
            "SELECT alias FROM model_aliases WHERE name = $1 AND version = $2 ORDER BY alias",
            &[&name, &version],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

impl ModelStore for PostgresStore {
    fn put(&self, name: &str, model: &NewModel) -> Result<u64, StoreError> {
        crate::check_name(name)?;
        self.with(|tx| {
            let version: i64 = tx
                .query_one(
                    "INSERT INTO model_names (name, next_version) VALUES ($1, 2)
                     ON CONFLICT (name) DO UPDATE SET next_version = model_names.next_version + 1
                     RETURNING next_version - 1",
                    &[&name],
                )
                .map_err(|e| self.fail(&e))?
                .get(0);
            tx.execute(
                "INSERT INTO models (name, version, created_at, created_by, metric, metric_version, abi_version,
                     library_sha256, parameters, fingerprint, statistics, state, state_sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &name,
                    &version,
                    &crate::now_micros(),
                    &model.created_by,
                    &model.metric,
                    &model.metric_version,
                    &i64::from(model.abi_version),
                    &model.library_sha256,
                    &model.parameters,
                    &model.fingerprint,
                    &model.statistics,
                    &model.state,
                    &crate::state_digest(&model.state),
                ],
            )
            .map_err(|e| self.fail(&e))?;
            Ok(version as u64)
        })
    }

    fn get(&self, reference: &Reference) -> Result<StoredModel, StoreError> {
        let name = reference.name();
        let not_found = || StoreError::NotFound {
            reference: reference.to_string(),
        };
        self.with(|tx| {
            let version: Option<i64> = match reference {
                Reference::Version(_, version) => Some(*version as i64),
                Reference::Latest(_) => tx
                    .query_one("SELECT MAX(version) FROM models WHERE name = $1", &[&name])
                    .map_err(|e| self.fail(&e))?
                    .get(0),
                Reference::Alias(_, alias) => tx
                    .query_opt(
                        "SELECT version FROM model_aliases WHERE name = $1 AND alias = $2",
                        &[&name, alias],
                    )
                    .map_err(|e| self.fail(&e))?
                    .map(|r| r.get(0)),
            };
            let version = version.ok_or_else(not_found)?;
            let row = tx
                .query_opt(
                    "SELECT created_at, created_by, metric, metric_version, abi_version, library_sha256,
                         parameters, fingerprint, statistics, state, state_sha256
                     FROM models WHERE name = $1 AND version = $2",
                    &[&name, &version],
                )
                .map_err(|e| self.fail(&e))?
                .ok_or_else(not_found)?;
            let model = NewModel {
                created_by: row.get(1),
                metric: row.get(2),
                metric_version: row.get(3),
                abi_version: u32::try_from(row.get::<_, i64>(4)).unwrap_or(u32::MAX),
                library_sha256: row.get(5),
                parameters: row.get(6),
                fingerprint: row.get(7),
                statistics: row.get(8),
                state: row.get(9),
            };
            crate::check_digest(reference, &model.state, row.get(10))?;
            Ok(StoredModel {
                name: name.to_owned(),
                version: version as u64,
                created_at: row.get(0),
                aliases: aliases_of(tx, name, version).map_err(|e| self.fail(&e))?,
                model,
            })
        })
    }

    fn list(&self, name: Option<&str>) -> Result<Vec<ModelSummary>, StoreError> {
        self.with(|tx| {
            let rows = tx
                .query(
                    "SELECT name, version, created_at, created_by, metric, metric_version, octet_length(state)::BIGINT
                     FROM models WHERE $1::TEXT IS NULL OR name = $1 ORDER BY name, version",
                    &[&name],
                )
                .map_err(|e| self.fail(&e))?;
            let mut summaries = Vec::with_capacity(rows.len());
            for row in rows {
                let (name, version): (String, i64) = (row.get(0), row.get(1));
                summaries.push(ModelSummary {
                    aliases: aliases_of(tx, &name, version).map_err(|e| self.fail(&e))?,
                    name,
                    version: version as u64,
                    created_at: row.get(2),
                    created_by: row.get(3),
                    metric: row.get(4),
                    metric_version: row.get(5),
                    state_bytes: row.get::<_, i64>(6) as u64,
                });
            }
            Ok(summaries)
        })
    }

    fn delete(&self, name: &str, version: u64) -> Result<(), StoreError> {
        self.with(|tx| {
            let aliases = aliases_of(tx, name, version as i64).map_err(|e| self.fail(&e))?;
            if !aliases.is_empty() {
                return Err(StoreError::Aliased {
                    name: name.to_owned(),
                    version,
                    aliases,
                });
            }
            let deleted = tx
                .execute(
                    "DELETE FROM models WHERE name = $1 AND version = $2",
                    &[&name, &(version as i64)],
                )
                .map_err(|e| self.fail(&e))?;
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
        self.with(|tx| {
            let version = version as i64;
            // Locks the version's row, so it cannot be deleted before the alias is written.
            let exists = tx
                .query_opt(
                    "SELECT version FROM models WHERE name = $1 AND version = $2 FOR SHARE",
                    &[&name, &version],
                )
                .map_err(|e| self.fail(&e))?;
            if exists.is_none() {
                return Err(StoreError::NotFound {
                    reference: format!("{name}@{version}"),
                });
            }
            let before: Option<i64> = tx
                .query_opt(
                    "SELECT version FROM model_aliases WHERE name = $1 AND alias = $2 FOR UPDATE",
                    &[&name, &alias],
                )
                .map_err(|e| self.fail(&e))?
                .map(|r| r.get(0));
            tx.execute(
                "INSERT INTO model_aliases (name, alias, version) VALUES ($1, $2, $3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                &[&name, &alias, &version],
            )
            .map_err(|e| self.fail(&e))?;
            Ok(before.map(|v| v as u64))
        })
    }

    fn remove_alias(&self, name: &str, alias: &str) -> Result<u64, StoreError> {
        self.with(|tx| {
            let version: Option<i64> = tx
                .query_opt(
                    "DELETE FROM model_aliases WHERE name = $1 AND alias = $2 RETURNING version",
                    &[&name, &alias],
                )
                .map_err(|e| self.fail(&e))?
                .map(|r| r.get(0));
            version
                .map(|v| v as u64)
                .ok_or_else(|| StoreError::NotFound {
                    reference: format!("{name}@{alias}"),
                })
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
