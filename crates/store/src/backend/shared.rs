//! The queries whose SQL is the same on SQLite and PostgreSQL, written once.
//!
//! sqlx types its pools by database, so code that runs on both is either generic over
//! `sqlx::Database` (with bounds longer than the queries) or expanded once per backend; this
//! is the latter. `shared_queries!(Backend, Database { … })` implements [`super::Queries`] for a
//! backend struct that has a `pool` field and an inherent `begin_write` method, in a module
//! that defines `CLAIM_JOB` (the one statement whose SQL differs), with the items in braces
//! added to the shared ones.

/// Implements `Queries` for `$backend` (on database `$db`): the shared queries plus the given
/// backend-specific items.
macro_rules! shared_queries {
    ($backend:ty, $db:ty { $($specific:tt)* }) => {
        /// Writes a resource record, inside a transaction or not.
        async fn upsert_record<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            operator: &str,
            address: &str,
            record: &serde_json::Value,
            updated_at: fediversity_engine::clock::Millis,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO resources (operator, address, record, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (operator, address) DO UPDATE \
                 SET record = excluded.record, updated_at = excluded.updated_at",
            )
            .bind(operator)
            .bind(address)
            .bind(sqlx::types::Json(record))
            .bind(updated_at)
            .execute(executor)
            .await?;
            Ok(())
        }

        /// Removes a resource record, inside a transaction or not.
        async fn delete_record<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            operator: &str,
            address: &str,
        ) -> Result<(), sqlx::Error> {
            sqlx::query("DELETE FROM resources WHERE operator = $1 AND address = $2")
                .bind(operator)
                .bind(address)
                .execute(executor)
                .await?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::backend::Queries for $backend {
            $($specific)*

            async fn key_check(&self, candidate: &str) -> $crate::error::Result<String> {
                const FAILED: &str = "checking the platform key";
                sqlx::query(
                    "INSERT INTO platform_key (id, check_value) VALUES (1, $1) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(candidate)
                .execute(&self.pool)
                .await
                .map_err($crate::error::query_failed(FAILED))?;
                sqlx::query_scalar("SELECT check_value FROM platform_key WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::error::query_failed(FAILED))
            }

            async fn create_operator(
                &self,
                operator: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                let created: Option<String> = sqlx::query_scalar(
                    "INSERT INTO operators (id, created_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO NOTHING RETURNING id",
                )
                .bind(operator)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::query_failed("creating an operator"))?;
                Ok(created.is_some())
            }

            async fn operators(&self) -> $crate::error::Result<Vec<String>> {
                sqlx::query_scalar("SELECT id FROM operators ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::error::query_failed("listing operators"))
            }

            async fn save_configuration(
                &self,
                operator: &str,
                config: &serde_json::Value,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<i64>> {
                const FAILED: &str = "saving a configuration";
                let mut tx = self.begin_write().await.map_err($crate::error::query_failed(FAILED))?;
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
                .map_err($crate::error::query_failed(FAILED))?;
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
                .map_err($crate::error::query_failed(FAILED))?;
                tx.commit().await.map_err($crate::error::query_failed(FAILED))?;
                Ok(Some(version))
            }

            async fn configurations(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::ConfigurationRow>> {
                sqlx::query_as(
                    "SELECT version, config, created_at FROM configurations \
                     WHERE operator = $1 ORDER BY version",
                )
                .bind(operator)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::query_failed("reading configurations"))
            }

            async fn create_deployment(
                &self,
                operator: &str,
                version: i64,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<i64>> {
                sqlx::query_scalar(
                    "INSERT INTO deployments (operator, configuration_version, status, created_at) \
                     SELECT operator, version, 'queued', $3 FROM configurations \
                     WHERE operator = $1 AND version = $2 \
                     RETURNING id",
                )
                .bind(operator)
                .bind(version)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::query_failed("creating a deployment"))
            }

            async fn start_deployment(
                &self,
                operator: &str,
                id: i64,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                let done = sqlx::query(
                    "UPDATE deployments SET status = 'running', started_at = $3 \
                     WHERE operator = $1 AND id = $2 AND status = 'queued'",
                )
                .bind(operator)
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::error::query_failed("starting a deployment"))?;
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
                let done = sqlx::query(
                    "UPDATE deployments SET status = $3, report = $4, finished_at = $5 \
                     WHERE operator = $1 AND id = $2 AND status IN ('queued', 'running')",
                )
                .bind(operator)
                .bind(id)
                .bind(status)
                .bind(sqlx::types::Json(report))
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::error::query_failed("finishing a deployment"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn deployments(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::DeploymentRow>> {
                sqlx::query_as(
                    "SELECT id, configuration_version, status, created_at, started_at, \
                     finished_at, report FROM deployments WHERE operator = $1 ORDER BY id DESC",
                )
                .bind(operator)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::query_failed("reading deployments"))
            }

            async fn append_events(
                &self,
                operator: &str,
                deployment: i64,
                events: &[(fediversity_engine::clock::Millis, serde_json::Value)],
            ) -> $crate::error::Result<Option<i64>> {
                const FAILED: &str = "appending events";
                let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
                let mut tx = self.begin_write().await.map_err($crate::error::query_failed(FAILED))?;
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
                .map_err($crate::error::query_failed(FAILED))?;
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
                    .map_err($crate::error::query_failed(FAILED))?;
                }
                tx.commit().await.map_err($crate::error::query_failed(FAILED))?;
                Ok(Some(last))
            }

            async fn events_since(
                &self,
                operator: &str,
                deployment: i64,
                after: i64,
            ) -> $crate::error::Result<Vec<$crate::backend::EventRow>> {
                sqlx::query_as(
                    "SELECT e.seq, e.at, e.event FROM events e \
                     JOIN deployments d ON d.id = e.deployment \
                     WHERE d.operator = $1 AND e.deployment = $2 AND e.seq > $3 \
                     ORDER BY e.seq",
                )
                .bind(operator)
                .bind(deployment)
                .bind(after)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::query_failed("reading events"))
            }

            async fn enqueue_job(
                &self,
                kind: &str,
                operator: Option<&str>,
                payload: &serde_json::Value,
                run_after: fediversity_engine::clock::Millis,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<i64> {
                sqlx::query_scalar(
                    "INSERT INTO jobs (kind, operator, payload, status, run_after, created_at) \
                     VALUES ($1, $2, $3, 'queued', $4, $5) RETURNING id",
                )
                .bind(kind)
                .bind(operator)
                .bind(sqlx::types::Json(payload))
                .bind(run_after)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::error::query_failed("queueing a job"))
            }

            async fn claim_job(
                &self,
                worker: &str,
                now: fediversity_engine::clock::Millis,
                locked_until: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<$crate::backend::JobRow>> {
                // `CLAIM_JOB` is the backend module's own: how two claims are kept apart is
                // where the databases differ.
                sqlx::query_as(CLAIM_JOB)
                    .bind(worker)
                    .bind(now)
                    .bind(locked_until)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::query_failed("claiming a job"))
            }

            async fn complete_job(
                &self,
                id: i64,
                worker: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'done', locked_by = NULL, locked_until = NULL, \
                     finished_at = $3 WHERE id = $1 AND status = 'running' AND locked_by = $2",
                )
                .bind(id)
                .bind(worker)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::error::query_failed("completing a job"))?;
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
                .execute(&self.pool)
                .await
                .map_err($crate::error::query_failed("failing a job"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn load_state(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::ResourceRow>> {
                sqlx::query_as(
                    "SELECT address, record FROM resources WHERE operator = $1 ORDER BY address",
                )
                .bind(operator)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::query_failed("loading state"))
            }

            async fn put_record(
                &self,
                operator: &str,
                address: &str,
                record: &serde_json::Value,
                updated_at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                upsert_record(&self.pool, operator, address, record, updated_at)
                    .await
                    .map_err($crate::error::query_failed("writing a resource record"))
            }

            async fn remove_record(
                &self,
                operator: &str,
                address: &str,
            ) -> $crate::error::Result<()> {
                delete_record(&self.pool, operator, address)
                    .await
                    .map_err($crate::error::query_failed("removing a resource record"))
            }

            async fn begin_intent(
                &self,
                intent: &$crate::backend::NewIntentRow<'_>,
            ) -> $crate::error::Result<i64> {
                sqlx::query_scalar(
                    "INSERT INTO journal \
                     (operator, address, provider, operation, idempotency_key, inputs, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(intent.operator)
                .bind(&intent.address)
                .bind(intent.provider)
                .bind(&intent.operation)
                .bind(intent.idempotency_key)
                .bind(sqlx::types::Json(&intent.inputs))
                .bind(intent.at)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::error::query_failed("recording an intent"))
            }

            async fn finish_intent(
                &self,
                operator: &str,
                id: i64,
                outcome: &serde_json::Value,
                finished_at: fediversity_engine::clock::Millis,
                change: &$crate::backend::RecordChangeRow,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "recording an intent's outcome";
                let mut tx = self.begin_write().await.map_err($crate::error::query_failed(FAILED))?;
                let address: Option<String> = sqlx::query_scalar(
                    "UPDATE journal SET outcome = $3, finished_at = $4 \
                     WHERE operator = $1 AND id = $2 AND finished_at IS NULL RETURNING address",
                )
                .bind(operator)
                .bind(id)
                .bind(sqlx::types::Json(outcome))
                .bind(finished_at)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::error::query_failed(FAILED))?;
                let Some(address) = address else {
                    return Ok(false);
                };
                match change {
                    $crate::backend::RecordChangeRow::Upsert { record, updated_at } => {
                        upsert_record(&mut *tx, operator, &address, record, *updated_at).await
                    }
                    $crate::backend::RecordChangeRow::Remove => {
                        delete_record(&mut *tx, operator, &address).await
                    }
                    $crate::backend::RecordChangeRow::Unchanged => Ok(()),
                }
                .map_err($crate::error::query_failed(FAILED))?;
                tx.commit().await.map_err($crate::error::query_failed(FAILED))?;
                Ok(true)
            }

            async fn open_intents(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::IntentRow>> {
                sqlx::query_as(
                    "SELECT id, address, provider, operation, idempotency_key, inputs, at \
                     FROM journal WHERE operator = $1 AND finished_at IS NULL ORDER BY id",
                )
                .bind(operator)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::query_failed("reading open intents"))
            }

            async fn try_lease(
                &self,
                operator: &str,
                holder: &str,
                now: fediversity_engine::clock::Millis,
                expires_at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<fediversity_engine::clock::Millis>> {
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
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::query_failed("taking a lease"))
            }

            async fn lease_holder(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Option<(String, fediversity_engine::clock::Millis)>> {
                sqlx::query_as("SELECT holder, expires_at FROM leases WHERE operator = $1")
                    .bind(operator)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::query_failed("reading a lease"))
            }

            async fn release_lease(
                &self,
                operator: &str,
                holder: &str,
            ) -> $crate::error::Result<()> {
                sqlx::query("DELETE FROM leases WHERE operator = $1 AND holder = $2")
                    .bind(operator)
                    .bind(holder)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::error::query_failed("releasing a lease"))?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}
