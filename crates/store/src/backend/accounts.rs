//! The panel's account queries (users and sessions), the same SQL on both databases.
//!
//! Like `shared.rs`, expanded once per backend by `account_queries!(Backend)` in a
//! module that defines `begin_write(connection)`; the backend struct has the inherent methods
//! `connection(context)` and `failed(context)`.

use async_trait::async_trait;
use fediversity_engine::clock::Millis;

use crate::error::Result;

/// A user as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub operator: Option<String>,
}

/// A live session as stored, with its user.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub operator: Option<String>,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// A user to create.
#[derive(Debug)]
pub(crate) struct NewUserRow {
    pub email: String,
    pub password_hash: String,
    pub role: &'static str,
    pub operator: Option<String>,
    /// Register `operator` in the same transaction (a sign-up), failing if it exists.
    pub new_operator: bool,
    /// The hash of the invitation the sign-up uses, marked used in the same transaction.
    pub invitation: Option<String>,
    pub now: Millis,
}

/// An invitation as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct InvitationRow {
    pub id: i64,
    pub note: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
    pub revoked_at: Option<i64>,
}

/// What creating a user came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UserCreated {
    Created(i64),
    OperatorTaken,
    EmailTaken,
    /// The invitation is unknown, used, revoked or expired.
    InvitationRefused,
}

/// The account queries.
#[async_trait]
pub(crate) trait AccountQueries: Send + Sync {
    /// Creates a user (and, for a sign-up, its operator), all or nothing.
    async fn create_user(&self, user: NewUserRow) -> Result<UserCreated>;
    /// The user with this (lower-cased) e-mail address.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>>;
    /// Opens a session, and forgets the sessions that expired.
    async fn create_session(
        &self,
        id_hash: &str,
        user: i64,
        csrf_token: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<()>;
    /// The session with this id hash, if it has not expired at `now`.
    async fn session(&self, id_hash: &str, now: Millis) -> Result<Option<SessionRow>>;
    /// Ends a session.
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// The e-mail addresses of the operator's users, sorted.
    async fn operator_emails(&self, operator: &str) -> Result<Vec<String>>;
    /// Removes the operator's users (and with them their sessions and API tokens); returns
    /// how many.
    async fn delete_users(&self, operator: &str) -> Result<u64>;
    /// Records an API token of `user`.
    async fn create_api_token(
        &self,
        id_hash: &str,
        user: i64,
        name: &str,
        now: Millis,
    ) -> Result<()>;
    /// The user whose API token has this hash.
    async fn api_token_user(&self, id_hash: &str) -> Result<Option<UserRow>>;
    /// Records an invitation; returns its id.
    async fn create_invitation(
        &self,
        id_hash: &str,
        note: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<i64>;
    /// Every invitation, newest first.
    async fn invitations(&self) -> Result<Vec<InvitationRow>>;
    /// Whether the invitation with this hash could be used at `now`.
    async fn invitation_usable(&self, id_hash: &str, now: Millis) -> Result<bool>;
    /// Revokes the invitation if it is unused and unrevoked; returns whether it did.
    async fn revoke_invitation(&self, id: i64, now: Millis) -> Result<bool>;
}

/// Implements [`AccountQueries`] for `$backend`.
macro_rules! account_queries {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl $crate::backend::accounts::AccountQueries for $backend {
            async fn create_user(
                &self,
                user: $crate::backend::accounts::NewUserRow,
            ) -> $crate::error::Result<$crate::backend::accounts::UserCreated> {
                use $crate::backend::accounts::UserCreated;
                const FAILED: &str = "creating a user";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                // First, so that a sign-up without a valid invitation learns nothing (not
                // even whether an operator id is taken). The row lock this takes makes a
                // concurrent use of the same invitation wait, then find it used.
                if let Some(invitation) = &user.invitation {
                    let used = sqlx::query(
                        "UPDATE invitations SET used_at = $1, used_by = $2 WHERE id_hash = $3 \
                         AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
                    )
                    .bind(user.now)
                    .bind(&user.operator)
                    .bind(invitation)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?
                    .rows_affected();
                    if used == 0 {
                        tx.rollback().await.map_err(self.failed(FAILED))?;
                        return Ok(UserCreated::InvitationRefused);
                    }
                }
                if user.new_operator {
                    let created: Option<String> = sqlx::query_scalar(
                        "INSERT INTO operators (id, created_at) VALUES ($1, $2) \
                         ON CONFLICT (id) DO NOTHING RETURNING id",
                    )
                    .bind(&user.operator)
                    .bind(user.now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                    if created.is_none() {
                        tx.rollback().await.map_err(self.failed(FAILED))?;
                        return Ok(UserCreated::OperatorTaken);
                    }
                }
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO users (email, password_hash, role, operator, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id",
                )
                .bind(&user.email)
                .bind(&user.password_hash)
                .bind(user.role)
                .bind(&user.operator)
                .bind(user.now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                match id {
                    Some(id) => {
                        tx.commit().await.map_err(self.failed(FAILED))?;
                        Ok(UserCreated::Created(id))
                    }
                    None => {
                        tx.rollback().await.map_err(self.failed(FAILED))?;
                        Ok(UserCreated::EmailTaken)
                    }
                }
            }

            async fn user_by_email(
                &self,
                email: &str,
            ) -> $crate::error::Result<Option<$crate::backend::accounts::UserRow>> {
                const FAILED: &str = "reading a user";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT id, email, password_hash, role, operator FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn create_session(
                &self,
                id_hash: &str,
                user: i64,
                csrf_token: &str,
                now: fediversity_engine::clock::Millis,
                expires_at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "opening a session";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))?;
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id_hash)
                .bind(user)
                .bind(csrf_token)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(())
            }

            async fn session(
                &self,
                id_hash: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<$crate::backend::accounts::SessionRow>> {
                const FAILED: &str = "reading a session";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT u.id, u.email, u.password_hash, u.role, u.operator, s.csrf_token, \
                     s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.id_hash = $1 AND s.expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn operator_emails(
                &self,
                operator: &str,
            ) -> $crate::error::Result<Vec<String>> {
                const FAILED: &str = "reading an operator's users";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar("SELECT email FROM users WHERE operator = $1 ORDER BY email")
                    .bind(operator)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn delete_users(&self, operator: &str) -> $crate::error::Result<u64> {
                const FAILED: &str = "removing an operator's users";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                for statement in [
                    "DELETE FROM sessions WHERE user_id IN \
                     (SELECT id FROM users WHERE operator = $1)",
                    "DELETE FROM api_tokens WHERE user_id IN \
                     (SELECT id FROM users WHERE operator = $1)",
                ] {
                    sqlx::query(statement)
                        .bind(operator)
                        .execute(&mut *tx)
                        .await
                        .map_err(self.failed(FAILED))?;
                }
                let removed = sqlx::query("DELETE FROM users WHERE operator = $1")
                    .bind(operator)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?
                    .rows_affected();
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(removed)
            }

            async fn create_api_token(
                &self,
                id_hash: &str,
                user: i64,
                name: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "recording an API token";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query(
                    "INSERT INTO api_tokens (id_hash, user_id, name, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id_hash)
                .bind(user)
                .bind(name)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(())
            }

            async fn api_token_user(
                &self,
                id_hash: &str,
            ) -> $crate::error::Result<Option<$crate::backend::accounts::UserRow>> {
                const FAILED: &str = "reading an API token";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT u.id, u.email, u.password_hash, u.role, u.operator \
                     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id_hash = $1",
                )
                .bind(id_hash)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn create_invitation(
                &self,
                id_hash: &str,
                note: &str,
                now: fediversity_engine::clock::Millis,
                expires_at: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<i64> {
                const FAILED: &str = "recording an invitation";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_scalar(
                    "INSERT INTO invitations (id_hash, note, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(id_hash)
                .bind(note)
                .bind(now)
                .bind(expires_at)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn invitations(
                &self,
            ) -> $crate::error::Result<Vec<$crate::backend::accounts::InvitationRow>> {
                const FAILED: &str = "reading the invitations";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT id, note, created_at, expires_at, used_at, used_by, revoked_at \
                     FROM invitations ORDER BY id DESC",
                )
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn invitation_usable(
                &self,
                id_hash: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "reading an invitation";
                let mut conn = self.connection(FAILED).await?;
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM invitations WHERE id_hash = $1 AND used_at IS NULL \
                     AND revoked_at IS NULL AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(found.is_some())
            }

            async fn revoke_invitation(
                &self,
                id: i64,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "revoking an invitation";
                let mut conn = self.connection(FAILED).await?;
                let revoked = sqlx::query(
                    "UPDATE invitations SET revoked_at = $1 \
                     WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?
                .rows_affected();
                Ok(revoked == 1)
            }

            async fn delete_session(&self, id_hash: &str) -> $crate::error::Result<()> {
                const FAILED: &str = "ending a session";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))?;
                Ok(())
            }
        }
    };
}
