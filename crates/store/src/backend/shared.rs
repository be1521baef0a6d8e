//! The queries whose SQL is the same on SQLite and PostgreSQL, written once.
//!
//! sqlx types its pools by database, so code that runs on both is either generic over
//! `sqlx::Database` (with bounds longer than the queries) or expanded once per backend; this
//! is the latter. `shared_queries!(Backend, Connection { … })` implements [`super::Queries`]
//! for a backend struct with inherent methods `connection(context)` (a connection for one
//! call: SQLite's one, or one from PostgreSQL's pool) and `failed(context)` (maps a query's
//! error), in a module that defines `begin_write(connection)` (how a write transaction begins)
//! and the statements whose SQL differs, `CLAIM_JOB` and `FINISH_INTENT` (bound the same way
//! on both). It also defines `insert_intent` and `update_intent`, recording an intent and
//! finishing one on a connection, for the backend's own `begin_intent` and `finish_intent`,
//! which go in the braces with `name` and `close`.

/// Implements `Queries` for `$backend` (whose connections are `$connection`): the shared
/// queries plus the given backend-specific items.
macro_rules! shared_queries {
    ($backend:ty, $connection:ty { $($specific:tt)* }) => {
        /// Records an intent on `connection`; returns its id.
        async fn insert_intent(
            connection: &mut $connection,
            intent: &$crate::backend::NewIntentRow,
        ) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar(
                "INSERT INTO journal \
                 (operator, address, provider, operation, idempotency_key, inputs, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(&intent.operator)
            .bind(&intent.address)
            .bind(&intent.provider)
            .bind(&intent.operation)
            .bind(&intent.idempotency_key)
            .bind(sqlx::types::Json(&intent.inputs))
            .bind(intent.at)
            // To the end, not `fetch_one`: on SQLite an autocommit statement commits when it
            // ends, and sqlx drops the error of one it stops early.
            .fetch_all(connection)
            .await?
            .into_iter()
            .next()
            .ok_or(sqlx::Error::RowNotFound)
        }

        /// Records an open intent's outcome and changes its record on `connection`, with the
        /// backend module's `FINISH_INTENT` (one statement: how is where the databases
        /// differ); false if the operator has no such open intent.
        async fn update_intent(
            connection: &mut $connection,
            finish: &$crate::backend::FinishIntentRow,
        ) -> Result<bool, sqlx::Error> {
            let (kind, record, updated_at) = finish.change.as_columns();
            let finished: Vec<i64> = sqlx::query_scalar(FINISH_INTENT)
                .bind(&finish.operator)
                .bind(finish.id)
                .bind(sqlx::types::Json(&finish.outcome))
                .bind(finish.finished_at)
                .bind(kind)
                .bind(record.map(sqlx::types::Json))
                .bind(updated_at)
                .fetch_all(connection)
                .await?;
            Ok(!finished.is_empty())
        }

        #[async_trait::async_trait]
        impl $crate::backend::Queries for $backend {
            $($specific)*

            async fn key_check(&self, candidate: &str) -> $crate::error::Result<String> {
                const FAILED: &str = "checking the platform key";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query(
                    "INSERT INTO platform_key (id, check_value) VALUES (1, $1) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(candidate)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                sqlx::query_scalar("SELECT check_value FROM platform_key WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn create_operator(
                &self,
                operator: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "creating an operator";
                let mut conn = self.connection(FAILED).await?;
                let created: Option<String> = sqlx::query_scalar(
                    "INSERT INTO operators (id, created_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO NOTHING RETURNING id",
                )
                .bind(operator)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(created.is_some())
            }

            async fn operators(&self) -> $crate::error::Result<Vec<String>> {
                const FAILED: &str = "listing operators";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar("SELECT id FROM operators ORDER BY id")
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn save_configuration(
                &self,
                operator: &str,
                config: &serde_json::Value,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<i64>> {
                const FAILED: &str = "saving a configuration";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                // Bumping the operator's counter first locks its row: concurrent saves for one
                // operator queue up instead of racing for the same version number.
                let version: Option<i64> = sqlx::query_scalar(
                    "UPDATE operators \
                     SET last_configuration_version = last_configuration_version + 1 \
                     WHERE id = $1 RETURNING last_configuration_version",
                )
                .bind(operator)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                let Some(version) = version else {
                    return Ok(None);
                };
                sqlx::query(
                    "INSERT INTO configurations (operator, version, config, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(operator)
                .bind(version)
                .bind(sqlx::types::Json(config))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(Some(version))
            }

            async fn configurations(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::ConfigurationRow>> {
                const FAILED: &str = "reading configurations";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT version, config, created_at FROM configurations \
                     WHERE operator = $1 ORDER BY version",
                )
                .bind(operator)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn create_deployment(
                &self,
                operator: &str,
                version: i64,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<i64>> {
                const FAILED: &str = "creating a deployment";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar(
                    "INSERT INTO deployments (operator, configuration_version, status, created_at) \
                     SELECT operator, version, 'queued', $3 FROM configurations \
                     WHERE operator = $1 AND version = $2 \
                     RETURNING id",
                )
                .bind(operator)
                .bind(version)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn start_deployment(
                &self,
                operator: &str,
                id: i64,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "starting a deployment";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE deployments SET status = 'running', started_at = $3 \
                     WHERE operator = $1 AND id = $2 AND status = 'queued'",
                )
                .bind(operator)
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_deployment(
                &self,
                operator: &str,
                id: i64,
                status: &str,
                report: &serde_json::Value,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "finishing a deployment";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE deployments SET status = $3, report = $4, finished_at = $5 \
                     WHERE operator = $1 AND id = $2 AND status IN ('queued', 'running')",
                )
                .bind(operator)
                .bind(id)
                .bind(status)
                .bind(sqlx::types::Json(report))
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn deployments(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::DeploymentRow>> {
                const FAILED: &str = "reading deployments";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT id, configuration_version, status, created_at, started_at, \
                     finished_at, report FROM deployments WHERE operator = $1 ORDER BY id DESC",
                )
                .bind(operator)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn append_events(
                &self,
                operator: &str,
                deployment: i64,
                events: &[(fediversity_engine::clock::Millis, serde_json::Value)],
            ) -> $crate::error::Result<Option<i64>> {
                const FAILED: &str = "appending events";
                let mut conn = self.connection(FAILED).await?;
                let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                // Taking the numbers from the deployment's row locks it: concurrent appends to
                // one deployment get consecutive, non-overlapping ranges.
                let last: Option<i64> = sqlx::query_scalar(
                    "UPDATE deployments SET last_event_seq = last_event_seq + $3 \
                     WHERE operator = $1 AND id = $2 RETURNING last_event_seq",
                )
                .bind(operator)
                .bind(deployment)
                .bind(count)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                let Some(last) = last else {
                    return Ok(None);
                };
                for (seq, (at, event)) in (last - count + 1..).zip(events) {
                    sqlx::query(
                        "INSERT INTO events (deployment, seq, at, event) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(deployment)
                    .bind(seq)
                    .bind(*at)
                    .bind(sqlx::types::Json(event))
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                }
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(Some(last))
            }

            async fn events_since(
                &self,
                operator: &str,
                deployment: i64,
                after: i64,
            ) -> $crate::error::Result<Vec<$crate::backend::EventRow>> {
                const FAILED: &str = "reading events";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT e.seq, e.at, e.event FROM events e \
                     JOIN deployments d ON d.id = e.deployment \
                     WHERE d.operator = $1 AND e.deployment = $2 AND e.seq > $3 \
                     ORDER BY e.seq",
                )
                .bind(operator)
                .bind(deployment)
                .bind(after)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn enqueue_job(
                &self,
                kind: &str,
                operator: Option<&str>,
                payload: &serde_json::Value,
                run_after: fediversity_engine::clock::Millis,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<i64> {
                const FAILED: &str = "queueing a job";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar(
                    "INSERT INTO jobs (kind, operator, payload, status, run_after, created_at) \
                     VALUES ($1, $2, $3, 'queued', $4, $5) RETURNING id",
                )
                .bind(kind)
                .bind(operator)
                .bind(sqlx::types::Json(payload))
                .bind(run_after)
                .bind(now)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn claim_job(
                &self,
                worker: &str,
                now: fediversity_engine::clock::Millis,
                locked_until: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<$crate::backend::JobRow>> {
                const FAILED: &str = "claiming a job";
                let mut conn = self.connection(FAILED).await?;
                // `CLAIM_JOB` is the backend module's own: how two claims are kept apart is
                // where the databases differ.
                sqlx::query_as(CLAIM_JOB)
                    .bind(worker)
                    .bind(now)
                    .bind(locked_until)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn complete_job(
                &self,
                id: i64,
                worker: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "completing a job";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'done', locked_by = NULL, locked_until = NULL, \
                     finished_at = $3 WHERE id = $1 AND status = 'running' AND locked_by = $2",
                )
                .bind(id)
                .bind(worker)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn fail_job(
                &self,
                id: i64,
                worker: &str,
                error: &str,
                retry_at: Option<fediversity_engine::clock::Millis>,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "failing a job";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE jobs SET \
                     status = CASE WHEN $3 IS NULL THEN 'failed' ELSE 'queued' END, \
                     run_after = COALESCE($3, run_after), \
                     finished_at = CASE WHEN $3 IS NULL THEN $5 ELSE NULL END, \
                     locked_by = NULL, locked_until = NULL, last_error = $4 \
                     WHERE id = $1 AND status = 'running' AND locked_by = $2",
                )
                .bind(id)
                .bind(worker)
                .bind(retry_at)
                .bind(error)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn load_state(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::ResourceRow>> {
                const FAILED: &str = "loading state";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT address, record FROM resources WHERE operator = $1 ORDER BY address",
                )
                .bind(operator)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn put_record(
                &self,
                operator: &str,
                address: &str,
                record: &serde_json::Value,
                updated_at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "writing a resource record";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query(
                    "INSERT INTO resources (operator, address, record, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (operator, address) DO UPDATE \
                     SET record = excluded.record, updated_at = excluded.updated_at",
                )
                .bind(operator)
                .bind(address)
                .bind(sqlx::types::Json(record))
                .bind(updated_at)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(())
            }

            async fn claim_domain(
                &self,
                operator: &str,
                domain: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "claiming a domain";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                // Nested names cannot be a unique key: claims are serialised instead, so the
                // check below and the write cannot interleave with another claim's.
                sqlx::query(SERIALIZE_DOMAIN_CLAIMS)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                let clash: Option<String> = sqlx::query_scalar(
                    "SELECT domain FROM domain_claims WHERE operator <> $1 \
                     AND (domain = $2 OR $2 LIKE '%.' || domain OR domain LIKE '%.' || $2) \
                     LIMIT 1",
                )
                .bind(operator)
                .bind(domain)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                if clash.is_some() {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO domain_claims (operator, domain, claimed_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (operator) DO UPDATE SET domain = excluded.domain, \
                     claimed_at = excluded.claimed_at",
                )
                .bind(operator)
                .bind(domain)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(true)
            }

            async fn release_domain(&self, operator: &str) -> $crate::error::Result<()> {
                const FAILED: &str = "releasing a domain";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query("DELETE FROM domain_claims WHERE operator = $1")
                    .bind(operator)
                    .execute(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))?;
                Ok(())
            }

            async fn record_identity_sync(
                &self,
                operator: &str,
                snapshot: &serde_json::Value,
                report: &serde_json::Value,
                at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "recording an identity sync";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query(
                    "INSERT INTO identity_syncs (operator, snapshot, report, synced_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (operator) DO UPDATE \
                     SET snapshot = excluded.snapshot, report = excluded.report, \
                     synced_at = excluded.synced_at",
                )
                .bind(operator)
                .bind(sqlx::types::Json(snapshot))
                .bind(sqlx::types::Json(report))
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(())
            }

            async fn identity_sync(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Option<$crate::backend::IdentitySyncRow>> {
                const FAILED: &str = "reading an identity sync";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT snapshot, report, synced_at FROM identity_syncs WHERE operator = $1",
                )
                .bind(operator)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn held_address(
                &self,
                pool: &str,
                operator: &str,
                resource: &str,
            ) -> $crate::error::Result<Option<String>> {
                const FAILED: &str = "reading an address";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar(
                    "SELECT address FROM addresses \
                     WHERE pool = $1 AND operator = $2 AND resource = $3",
                )
                .bind(pool)
                .bind(operator)
                .bind(resource)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn taken_addresses(&self, pool: &str) -> $crate::error::Result<Vec<String>> {
                const FAILED: &str = "reading a pool's addresses";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar("SELECT address FROM addresses WHERE pool = $1")
                    .bind(pool)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn claim_address(
                &self,
                pool: &str,
                address: &str,
                operator: &str,
                resource: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "claiming an address";
                let mut conn = self.connection(FAILED).await?;
                // No conflict target: either unique key (the address, or the resource's one
                // address in the pool) makes the claim a no-op the caller sees.
                let claimed: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO addresses (pool, address, operator, resource, allocated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING address",
                )
                .bind(pool)
                .bind(address)
                .bind(operator)
                .bind(resource)
                .bind(now)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(!claimed.is_empty())
            }

            async fn release_addresses(
                &self,
                operator: &str,
                resource: &str,
            ) -> $crate::error::Result<u64> {
                const FAILED: &str = "releasing addresses";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "DELETE FROM addresses WHERE operator = $1 AND resource = $2",
                )
                .bind(operator)
                .bind(resource)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected())
            }

            async fn open_intents(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::IntentRow>> {
                const FAILED: &str = "reading open intents";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT id, address, provider, operation, idempotency_key, inputs, at \
                     FROM journal WHERE operator = $1 AND finished_at IS NULL ORDER BY id",
                )
                .bind(operator)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn try_lease(
                &self,
                operator: &str,
                holder: &str,
                now: fediversity_engine::clock::Millis,
                expires_at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<fediversity_engine::clock::Millis>> {
                const FAILED: &str = "taking a lease";
                let mut conn = self.connection(FAILED).await?;
                // One statement, so the check and the take are atomic on both databases: the
                // row is inserted, or updated only if the lease lapsed or is the holder's own.
                sqlx::query_scalar(
                    "INSERT INTO leases (operator, holder, expires_at) VALUES ($1, $2, $4) \
                     ON CONFLICT (operator) DO UPDATE \
                     SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.expires_at < $3 OR leases.holder = excluded.holder \
                     RETURNING expires_at",
                )
                .bind(operator)
                .bind(holder)
                .bind(now)
                .bind(expires_at)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn lease_holder(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Option<(String, fediversity_engine::clock::Millis)>> {
                const FAILED: &str = "reading a lease";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as("SELECT holder, expires_at FROM leases WHERE operator = $1")
                    .bind(operator)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn release_lease(
                &self,
                operator: &str,
                holder: &str,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "releasing a lease";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query("DELETE FROM leases WHERE operator = $1 AND holder = $2")
                    .bind(operator)
                    .bind(holder)
                    .execute(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))?;
                Ok(())
            }
        }
    };
}
