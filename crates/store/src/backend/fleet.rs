//! The fleet's queries (releases, rollout items, notifications), the same SQL on both
//! databases.
//!
//! Like `accounts.rs`, expanded once per backend by `fleet_queries!(Backend)` in a module that
//! defines `begin_write(connection)`; the backend struct has the inherent methods
//! `connection(context)` and `failed(context)`. Slots and policies are JSON text written and
//! read by [`crate::fleet`]; the SQL does not look inside.

use async_trait::async_trait;
use fediversity_engine::clock::Millis;

use crate::error::Result;

/// A release as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReleaseRow {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub deadline: Option<i64>,
    pub infra: String,
    pub policy: String,
    pub expected_minutes: i64,
    pub state: String,
    pub halt_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A release to store.
#[derive(Debug)]
pub(crate) struct NewReleaseRow {
    pub title: String,
    pub severity: &'static str,
    pub deadline: Option<Millis>,
    pub infra: String,
    pub policy: String,
    pub expected_minutes: i64,
    pub now: Millis,
}

/// One operator in a rollout, as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ItemRow {
    pub release_id: i64,
    pub operator: String,
    pub wave: i64,
    pub slot: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub attempts: i64,
    pub deployment_id: Option<i64>,
}

/// An item's new slot, status and reason, as stored.
#[derive(Debug)]
pub(crate) struct ItemUpdate {
    pub slot: Option<String>,
    pub status: &'static str,
    pub reason: Option<String>,
}

/// The status and slot an item must still have for a guarded update to apply.
#[derive(Debug)]
pub(crate) struct ItemGuard {
    pub status: &'static str,
    pub slot: Option<String>,
}

/// A notification as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NotificationRow {
    pub id: i64,
    pub release_id: i64,
    pub operator: String,
    pub kind: String,
    pub occasion: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub emailed_at: Option<i64>,
}

/// A notification to store.
#[derive(Debug)]
pub(crate) struct NewNotificationRow {
    pub release_id: i64,
    pub operator: String,
    pub kind: &'static str,
    pub occasion: String,
    pub subject: String,
    pub body: String,
    pub now: Millis,
}

/// The fleet queries.
#[async_trait]
pub(crate) trait FleetQueries: Send + Sync {
    /// Stores a release and its operators (operator, wave), all or nothing; returns its id.
    async fn create_release(
        &self,
        release: NewReleaseRow,
        items: Vec<(String, i64)>,
    ) -> Result<i64>;
    /// Every release, newest first.
    async fn releases(&self) -> Result<Vec<ReleaseRow>>;
    /// One release.
    async fn release(&self, id: i64) -> Result<Option<ReleaseRow>>;
    /// Changes a release's state; false if there is no such release.
    async fn set_release_state(
        &self,
        id: i64,
        state: &'static str,
        halt_reason: Option<String>,
        now: Millis,
    ) -> Result<bool>;
    /// A release's operators, by wave then operator.
    async fn release_items(&self, release: i64) -> Result<Vec<ItemRow>>;
    /// An operator's place in every release, newest release first.
    async fn operator_items(&self, operator: &str) -> Result<Vec<ItemRow>>;
    /// Writes an item's slot, status and reason, counting an attempt when it starts running;
    /// false if there is no such item, or, given `expected`, if the item is no longer as
    /// expected (another writer changed it first).
    async fn update_item(
        &self,
        release: i64,
        operator: &str,
        item: ItemUpdate,
        expected: Option<ItemGuard>,
        now: Millis,
    ) -> Result<bool>;
    /// Records the deployment started for an item; false if there is no such item.
    async fn set_item_deployment(
        &self,
        release: i64,
        operator: &str,
        deployment: i64,
    ) -> Result<bool>;
    /// Stores a notification; `None` when one with the same key exists already.
    async fn add_notification(&self, notification: NewNotificationRow) -> Result<Option<i64>>;
    /// An operator's notifications, newest first, at most `limit`.
    async fn notifications(&self, operator: &str, limit: i64) -> Result<Vec<NotificationRow>>;
    /// Notifications not yet e-mailed, oldest first, at most `limit`.
    async fn unsent_notifications(&self, limit: i64) -> Result<Vec<NotificationRow>>;
    /// Records that a notification was e-mailed; false if it was already.
    async fn mark_emailed(&self, id: i64, now: Millis) -> Result<bool>;
}

/// The columns of `fleet_releases`, in [`ReleaseRow`]'s order.
macro_rules! release_columns {
    () => {
        "id, title, severity, deadline, infra, policy, expected_minutes, state, halt_reason, \
         created_at, updated_at"
    };
}

/// The columns of `fleet_notifications`, in [`NotificationRow`]'s order.
macro_rules! notification_columns {
    () => {
        "id, release_id, operator, kind, occasion, subject, body, created_at, emailed_at"
    };
}

/// Implements [`FleetQueries`] for `$backend`.
macro_rules! fleet_queries {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl $crate::backend::fleet::FleetQueries for $backend {
            async fn create_release(
                &self,
                release: $crate::backend::fleet::NewReleaseRow,
                items: Vec<(String, i64)>,
            ) -> $crate::error::Result<i64> {
                const FAILED: &str = "creating a release";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO fleet_releases (title, severity, deadline, infra, policy, \
                     expected_minutes, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $7) RETURNING id",
                )
                .bind(&release.title)
                .bind(release.severity)
                .bind(release.deadline)
                .bind(&release.infra)
                .bind(&release.policy)
                .bind(release.expected_minutes)
                .bind(release.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                for (operator, wave) in &items {
                    sqlx::query(
                        "INSERT INTO fleet_items (release_id, operator, wave, status, updated_at) \
                         VALUES ($1, $2, $3, 'scheduled', $4)",
                    )
                    .bind(id)
                    .bind(operator)
                    .bind(wave)
                    .bind(release.now)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                }
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(id)
            }

            async fn releases(
                &self,
            ) -> $crate::error::Result<Vec<$crate::backend::fleet::ReleaseRow>> {
                const FAILED: &str = "reading releases";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(concat!(
                    "SELECT ",
                    release_columns!(),
                    " FROM fleet_releases ORDER BY id DESC"
                ))
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn release(
                &self,
                id: i64,
            ) -> $crate::error::Result<Option<$crate::backend::fleet::ReleaseRow>> {
                const FAILED: &str = "reading a release";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(concat!(
                    "SELECT ",
                    release_columns!(),
                    " FROM fleet_releases WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn set_release_state(
                &self,
                id: i64,
                state: &'static str,
                halt_reason: Option<String>,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "changing a release's state";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE fleet_releases SET state = $2, halt_reason = $3, updated_at = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(state)
                .bind(halt_reason)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_items(
                &self,
                release: i64,
            ) -> $crate::error::Result<Vec<$crate::backend::fleet::ItemRow>> {
                const FAILED: &str = "reading a rollout";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT release_id, operator, wave, slot, status, reason, attempts, deployment_id \
                     FROM fleet_items WHERE release_id = $1 ORDER BY wave, operator",
                )
                .bind(release)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn operator_items(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<$crate::backend::fleet::ItemRow>> {
                const FAILED: &str = "reading an operator's maintenance";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT release_id, operator, wave, slot, status, reason, attempts, deployment_id \
                     FROM fleet_items WHERE operator = $1 ORDER BY release_id DESC",
                )
                .bind(operator)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn update_item(
                &self,
                release: i64,
                operator: &str,
                item: $crate::backend::fleet::ItemUpdate,
                expected: Option<$crate::backend::fleet::ItemGuard>,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "recording a rollout step";
                let mut conn = self.connection(FAILED).await?;
                let guarded = expected.is_some();
                let (expected_status, expected_slot) =
                    expected.map_or((None, None), |g| (Some(g.status), g.slot));
                let done = sqlx::query(
                    "UPDATE fleet_items SET slot = $3, status = $4, reason = $5, updated_at = $6, \
                     attempts = attempts + CASE WHEN $4 = 'running' AND status <> 'running' \
                                                THEN 1 ELSE 0 END \
                     WHERE release_id = $1 AND operator = $2 \
                       AND (NOT $7 OR (status = $8 \
                            AND (slot = $9 OR (slot IS NULL AND $9 IS NULL))))",
                )
                .bind(release)
                .bind(operator)
                .bind(item.slot)
                .bind(item.status)
                .bind(item.reason)
                .bind(now)
                .bind(guarded)
                .bind(expected_status)
                .bind(expected_slot)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_item_deployment(
                &self,
                release: i64,
                operator: &str,
                deployment: i64,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "recording a rollout's deployment";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE fleet_items SET deployment_id = $3 \
                     WHERE release_id = $1 AND operator = $2",
                )
                .bind(release)
                .bind(operator)
                .bind(deployment)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_notification(
                &self,
                n: $crate::backend::fleet::NewNotificationRow,
            ) -> $crate::error::Result<Option<i64>> {
                const FAILED: &str = "recording a notification";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar(
                    "INSERT INTO fleet_notifications (release_id, operator, kind, occasion, \
                     subject, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (release_id, operator, kind, occasion) DO NOTHING RETURNING id",
                )
                .bind(n.release_id)
                .bind(&n.operator)
                .bind(n.kind)
                .bind(&n.occasion)
                .bind(&n.subject)
                .bind(&n.body)
                .bind(n.now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn notifications(
                &self,
                operator: &str,
                limit: i64,
            ) -> $crate::error::Result<Vec<$crate::backend::fleet::NotificationRow>> {
                const FAILED: &str = "reading notifications";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(concat!(
                    "SELECT ",
                    notification_columns!(),
                    " FROM fleet_notifications WHERE operator = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(operator)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn unsent_notifications(
                &self,
                limit: i64,
            ) -> $crate::error::Result<Vec<$crate::backend::fleet::NotificationRow>> {
                const FAILED: &str = "reading notifications to e-mail";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(concat!(
                    "SELECT ",
                    notification_columns!(),
                    " FROM fleet_notifications WHERE emailed_at IS NULL ORDER BY id LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn mark_emailed(
                &self,
                id: i64,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "recording an e-mail";
                let mut conn = self.connection(FAILED).await?;
                let done = sqlx::query(
                    "UPDATE fleet_notifications SET emailed_at = $2 \
                     WHERE id = $1 AND emailed_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
