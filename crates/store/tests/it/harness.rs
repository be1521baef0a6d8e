//! The fixture every suite test gets: a fresh, empty database on one backend, and builders for
//! the values the tests store.

use std::path::PathBuf;

use fediversity_engine::clock::Millis;
use fediversity_engine::state::{RecordStatus, ResourceRecord};
use fediversity_engine::store::{Intent, Operation};
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use fediversity_store::{Backend, SealingKey, Store};
use fediversity_testkit::postgres::PostgresServer;
use serde_json::Value;
use sqlx::Row as _;
use tempfile::TempDir;

/// One test's database, and the key its store is opened with.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub key: SealingKey,
    /// The SQLite file (and its WAL beside it), for reading the raw bytes.
    sqlite_file: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite(_test: &str) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fediversity.db");
        TestDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}?mode=rwc", file.display()),
            key: SealingKey::generate().unwrap(),
            sqlite_file: Some(file),
            _dir: Some(dir),
        }
    }

    /// A new database on the test binary's PostgreSQL server (started on first use).
    pub async fn postgres(test: &str) -> TestDb {
        let test = test.to_owned();
        let url =
            tokio::task::spawn_blocking(move || PostgresServer::shared().create_database(&test))
                .await
                .unwrap();
        TestDb {
            backend: Backend::Postgres,
            url,
            key: SealingKey::generate().unwrap(),
            sqlite_file: None,
            _dir: None,
        }
    }

    /// A store on this database with the test's key.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url, self.key.clone()).await.unwrap();
        assert_eq!(store.backend(), self.backend);
        store
    }

    /// Everything the database holds, as the database holds it: the SQLite file's bytes (with
    /// its write-ahead log), or every PostgreSQL row as text. Close stores first.
    pub async fn raw_contents(&self) -> String {
        match &self.sqlite_file {
            Some(file) => sqlite_bytes(file),
            None => self.postgres_rows().await,
        }
    }

    async fn postgres_rows(&self) -> String {
        let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
        let mut all = String::new();
        for table in [
            "platform_key",
            "operators",
            "configurations",
            "deployments",
            "events",
            "resources",
            "journal",
            "leases",
            "jobs",
            "oidc_signing_keys",
        ] {
            let query = format!("SELECT t::text FROM {table} t");
            for row in sqlx::query(sqlx::AssertSqlSafe(query))
                .fetch_all(&pool)
                .await
                .unwrap()
            {
                all.push_str(&row.get::<String, _>(0));
                all.push('\n');
            }
        }
        pool.close().await;
        all
    }
}

/// The bytes of a SQLite database and of its WAL and shared-memory files, lossily as text.
fn sqlite_bytes(file: &std::path::Path) -> String {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        if let Ok(content) = std::fs::read(PathBuf::from(path)) {
            bytes.extend(content);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An operator id.
pub fn op(id: &str) -> OperatorId {
    OperatorId::try_from(id).unwrap()
}

/// A resource address.
pub fn addr(address: &str) -> ResourceAddress {
    address.parse().unwrap()
}

/// A record with the given inputs and outputs.
pub fn record(inputs: Value, outputs: Value, updated_at: Millis) -> ResourceRecord {
    ResourceRecord {
        provider: "local".to_owned(),
        service: None,
        holds_data: false,
        retention: None,
        inputs,
        outputs,
        depends_on: Default::default(),
        status: RecordStatus::Active,
        updated_at,
    }
}

/// An intent to create `address` for `operator`.
pub fn intent(operator: &OperatorId, address: &str, inputs: Value, at: Millis) -> Intent {
    Intent {
        operator: operator.clone(),
        address: addr(address),
        provider: "local".to_owned(),
        operation: Operation::Create,
        idempotency_key: format!("{operator}/{address}/{at}"),
        inputs,
        at,
    }
}
