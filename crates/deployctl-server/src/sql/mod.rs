//! [`SqlStore`]: the [`Store`](crate::Store) on SQLite (a file in the data dir, WAL) or
//! PostgreSQL: connecting and migrating here, the queries in `queries.rs`. The SQL is written
//! once with `$n` parameters, which both speak; each backend has its own migration directory
//! where the DDL differs (`migrations/sqlite`, `migrations/postgres`).

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::Error;

/// The file name of the SQLite database in the data dir.
pub const SQLITE_FILE: &str = "deployctl.db";

/// The store on one of the two databases.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: Pool,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the backend's pool: the same code, compiled per backend.
macro_rules! on_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// Embedded migrations of one backend.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "app_operations",
        include_str!("../../migrations/sqlite/0002_app_operations.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "app_operations",
        include_str!("../../migrations/postgres/0002_app_operations.sql"),
    ),
];

const DEPLOYMENT_COLUMNS: &str = "seq, id, project, app, kind, params, status, request, \
     requested_by, stages, result, error, claimed_by, created_ms, started_ms, finished_ms";

impl SqlStore {
    /// Opens (creating it if missing) `deployctl.db` in `data_dir`, in WAL mode, and brings
    /// its schema up to date.
    pub async fn sqlite(data_dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let file = data_dir.join(SQLITE_FILE);
        let opts = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|source| Error::Connect {
                what: file.display().to_string(),
                source,
            })?;
        let migrator = Migrator::new(Embedded(SQLITE_MIGRATIONS))
            .await
            .map_err(|source| Error::Migrate { source })?;
        migrator
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { source })?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://…`, no TLS) and brings the schema up to
    /// date (the migrator holds a lock, so servers starting together migrate once).
    pub async fn postgres(url: &str) -> Result<Self, Error> {
        let opts =
            sqlx::postgres::PgConnectOptions::from_str(url).map_err(|source| Error::Connect {
                what: redact_url(url),
                source,
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|source| Error::Connect {
                what: redact_url(url),
                source,
            })?;
        let migrator = Migrator::new(Embedded(POSTGRES_MIGRATIONS))
            .await
            .map_err(|source| Error::Migrate { source })?;
        migrator
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { source })?;
        Ok(Self {
            pool: Pool::Postgres(pool),
        })
    }

    /// `postgres://…` → PostgreSQL; anything else is refused (SQLite is chosen by leaving the
    /// URL out and naming a data dir).
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Self, Error> {
        match database_url {
            None => Self::sqlite(data_dir).await,
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Self::postgres(u).await
            }
            Some(u) => Err(Error::UnsupportedUrl { url: redact_url(u) }),
        }
    }

    /// Whether this is the PostgreSQL store (several servers may share it).
    pub fn is_shared(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

mod queries;
