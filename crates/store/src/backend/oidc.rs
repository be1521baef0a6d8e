//! The queries of the panel's OpenID Connect provider (clients, signing keys, grants and
//! tokens), the same SQL on both databases.
//!
//! Like `accounts.rs`, expanded once per backend by `oidc_queries!(Backend)` in a module that
//! defines `begin_write(connection)`; the backend struct has the inherent methods
//! `connection(context)` and `failed(context)`.

use async_trait::async_trait;
use fediversity_engine::clock::Millis;

use crate::error::Result;

/// A client as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClientRow {
    pub client_id: String,
    pub operator: String,
    pub secret_hash: String,
    pub redirect_uris: String,
}

/// A signing key as stored (its private key sealed).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SigningKeyRow {
    pub kid: String,
    pub private_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A grant as stored, with its user.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GrantRow {
    pub id: i64,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub user_id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub operator: Option<String>,
}

/// A grant to record.
#[derive(Debug)]
pub(crate) struct NewGrantRow {
    pub code_hash: String,
    pub client_id: String,
    pub user: i64,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: Millis,
    pub code_expires_at: Millis,
}

/// What presenting a code or a refresh token came to, before the grant is read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented {
    /// It was good, and is now spent: the grant's id.
    Fresh(i64),
    /// It had been spent before: the grant is now revoked.
    Replayed,
    /// No such live code or token (or another client's).
    Unknown,
}

/// The OpenID Connect provider's queries.
#[async_trait]
pub(crate) trait OidcQueries: Send + Sync {
    /// Creates or updates a client; false (nothing written) if the id is another operator's.
    async fn put_oidc_client(&self, client: &ClientRow, now: Millis) -> Result<bool>;
    /// The client with this id.
    async fn oidc_client(&self, client_id: &str) -> Result<Option<ClientRow>>;
    /// Removes the operator's client and everything issued to it; false if there was none.
    async fn delete_oidc_client(&self, operator: &str, client_id: &str) -> Result<bool>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>>;
    /// Adds a key, retires every other one at `now` and forgets those retired before
    /// `forget_before`, in one transaction.
    async fn rotate_signing_key(
        &self,
        kid: &str,
        private_key: &str,
        now: Millis,
        forget_before: Millis,
    ) -> Result<()>;

    /// Records a grant (its code fresh), and forgets grants whose codes expired with no live
    /// token left.
    async fn create_oidc_grant(&self, grant: &NewGrantRow, now: Millis) -> Result<()>;
    /// Spends a code: see [`Presented`].
    async fn take_oidc_code(&self, code_hash: &str, now: Millis) -> Result<Presented>;
    /// Spends a refresh token of `client_id`: see [`Presented`].
    async fn use_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: Millis,
    ) -> Result<Presented>;
    /// The live, unrevoked grant with this id.
    async fn oidc_grant(&self, id: i64) -> Result<Option<GrantRow>>;
    /// Records tokens (hash, `access` or `refresh`, expiry) of a grant, and forgets expired ones.
    async fn add_oidc_tokens(
        &self,
        grant: i64,
        tokens: &[(String, &'static str, Millis)],
        now: Millis,
    ) -> Result<()>;
    /// The unrevoked grant of a live access token.
    async fn access_token_grant(&self, token_hash: &str, now: Millis) -> Result<Option<GrantRow>>;
}

/// The columns of a grant with its user (`oidc_grants g JOIN users u`), as a literal for
/// `concat!`.
macro_rules! grant_columns {
    () => {
        "g.id, g.client_id, g.redirect_uri, g.code_challenge, g.scope, g.nonce, g.auth_time, \
         u.id AS user_id, u.email, u.password_hash, u.role, u.operator"
    };
}

/// Implements [`OidcQueries`] for `$backend`, whose database is `$db`.
macro_rules! oidc_queries {
    ($backend:ty, $db:ty) => {
        /// Revokes grant `id` within `tx`: marks it and removes its tokens, so nothing it
        /// issued is honoured any more.
        async fn revoke_oidc_grant(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: i64,
            now: fediversity_engine::clock::Millis,
        ) -> Result<(), sqlx::Error> {
            sqlx::query("UPDATE oidc_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM oidc_tokens WHERE grant_id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::backend::oidc::OidcQueries for $backend {
            async fn put_oidc_client(
                &self,
                client: &$crate::backend::oidc::ClientRow,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "recording an OpenID Connect client";
                let mut conn = self.connection(FAILED).await?;
                let written: Option<String> = sqlx::query_scalar(
                    "INSERT INTO oidc_clients \
                     (client_id, operator, secret_hash, redirect_uris, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
                     redirect_uris = excluded.redirect_uris, updated_at = excluded.updated_at \
                     WHERE oidc_clients.operator = excluded.operator RETURNING client_id",
                )
                .bind(&client.client_id)
                .bind(&client.operator)
                .bind(&client.secret_hash)
                .bind(&client.redirect_uris)
                .bind(now)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?
                .into_iter()
                .next();
                Ok(written.is_some())
            }

            async fn oidc_client(
                &self,
                client_id: &str,
            ) -> $crate::error::Result<Option<$crate::backend::oidc::ClientRow>> {
                const FAILED: &str = "reading an OpenID Connect client";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT client_id, operator, secret_hash, redirect_uris FROM oidc_clients \
                     WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn delete_oidc_client(
                &self,
                operator: &str,
                client_id: &str,
            ) -> $crate::error::Result<bool> {
                const FAILED: &str = "removing an OpenID Connect client";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                for statement in [
                    "DELETE FROM oidc_tokens WHERE grant_id IN (SELECT g.id FROM oidc_grants g \
                     JOIN oidc_clients c ON c.client_id = g.client_id \
                     WHERE c.client_id = $1 AND c.operator = $2)",
                    "DELETE FROM oidc_grants WHERE client_id IN (SELECT client_id \
                     FROM oidc_clients WHERE client_id = $1 AND operator = $2)",
                ] {
                    sqlx::query(statement)
                        .bind(client_id)
                        .bind(operator)
                        .execute(&mut *tx)
                        .await
                        .map_err(self.failed(FAILED))?;
                }
                let removed =
                    sqlx::query("DELETE FROM oidc_clients WHERE client_id = $1 AND operator = $2")
                        .bind(client_id)
                        .bind(operator)
                        .execute(&mut *tx)
                        .await
                        .map_err(self.failed(FAILED))?
                        .rows_affected();
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(removed > 0)
            }

            async fn signing_keys(
                &self,
            ) -> $crate::error::Result<Vec<$crate::backend::oidc::SigningKeyRow>> {
                const FAILED: &str = "reading the OpenID Connect signing keys";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(
                    "SELECT kid, private_key, created_at, retired_at FROM oidc_signing_keys \
                     ORDER BY created_at DESC, kid DESC",
                )
                .fetch_all(&mut *conn)
                .await
                .map_err(self.failed(FAILED))
            }

            async fn rotate_signing_key(
                &self,
                kid: &str,
                private_key: &str,
                now: fediversity_engine::clock::Millis,
                forget_before: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "rotating the OpenID Connect signing key";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                sqlx::query("DELETE FROM oidc_signing_keys WHERE retired_at < $1")
                    .bind(forget_before)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                sqlx::query("UPDATE oidc_signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                sqlx::query(
                    "INSERT INTO oidc_signing_keys (kid, private_key, created_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(kid)
                .bind(private_key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?;
                tx.commit().await.map_err(self.failed(FAILED))
            }

            async fn create_oidc_grant(
                &self,
                grant: &$crate::backend::oidc::NewGrantRow,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "recording an OpenID Connect authorization";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query(
                    "DELETE FROM oidc_grants WHERE code_expires_at < $1 AND NOT EXISTS \
                     (SELECT 1 FROM oidc_tokens t WHERE t.grant_id = oidc_grants.id \
                      AND t.expires_at > $1)",
                )
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                sqlx::query(
                    "INSERT INTO oidc_grants (code_hash, client_id, user_id, redirect_uri, \
                     code_challenge, scope, nonce, auth_time, code_expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&grant.code_hash)
                .bind(&grant.client_id)
                .bind(grant.user)
                .bind(&grant.redirect_uri)
                .bind(&grant.code_challenge)
                .bind(&grant.scope)
                .bind(&grant.nonce)
                .bind(grant.auth_time)
                .bind(grant.code_expires_at)
                .execute(&mut *conn)
                .await
                .map_err(self.failed(FAILED))?;
                Ok(())
            }

            async fn take_oidc_code(
                &self,
                code_hash: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<$crate::backend::oidc::Presented> {
                use $crate::backend::oidc::Presented;
                const FAILED: &str = "redeeming an OpenID Connect code";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                let fresh: Option<i64> = sqlx::query_scalar(
                    "UPDATE oidc_grants SET code_used_at = $2 WHERE code_hash = $1 \
                     AND code_used_at IS NULL AND revoked_at IS NULL AND code_expires_at > $2 \
                     RETURNING id",
                )
                .bind(code_hash)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?
                .into_iter()
                .next();
                let outcome = match fresh {
                    Some(id) => Presented::Fresh(id),
                    None => {
                        let spent: Option<i64> = sqlx::query_scalar(
                            "SELECT id FROM oidc_grants WHERE code_hash = $1 \
                             AND code_used_at IS NOT NULL",
                        )
                        .bind(code_hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(self.failed(FAILED))?;
                        match spent {
                            Some(id) => {
                                revoke_oidc_grant(&mut tx, id, now)
                                    .await
                                    .map_err(self.failed(FAILED))?;
                                Presented::Replayed
                            }
                            None => Presented::Unknown,
                        }
                    }
                };
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(outcome)
            }

            async fn use_refresh_token(
                &self,
                token_hash: &str,
                client_id: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<$crate::backend::oidc::Presented> {
                use $crate::backend::oidc::Presented;
                const FAILED: &str = "using an OpenID Connect refresh token";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                let fresh: Option<i64> = sqlx::query_scalar(
                    "UPDATE oidc_tokens SET used_at = $3 WHERE token_hash = $1 \
                     AND kind = 'refresh' AND used_at IS NULL AND expires_at > $3 \
                     AND grant_id IN (SELECT id FROM oidc_grants \
                                      WHERE client_id = $2 AND revoked_at IS NULL) \
                     RETURNING grant_id",
                )
                .bind(token_hash)
                .bind(client_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(self.failed(FAILED))?
                .into_iter()
                .next();
                let outcome = match fresh {
                    Some(id) => Presented::Fresh(id),
                    None => {
                        let spent: Option<i64> = sqlx::query_scalar(
                            "SELECT t.grant_id FROM oidc_tokens t \
                             JOIN oidc_grants g ON g.id = t.grant_id \
                             WHERE t.token_hash = $1 AND t.kind = 'refresh' \
                             AND t.used_at IS NOT NULL AND g.client_id = $2",
                        )
                        .bind(token_hash)
                        .bind(client_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(self.failed(FAILED))?;
                        match spent {
                            Some(id) => {
                                revoke_oidc_grant(&mut tx, id, now)
                                    .await
                                    .map_err(self.failed(FAILED))?;
                                Presented::Replayed
                            }
                            None => Presented::Unknown,
                        }
                    }
                };
                tx.commit().await.map_err(self.failed(FAILED))?;
                Ok(outcome)
            }

            async fn oidc_grant(
                &self,
                id: i64,
            ) -> $crate::error::Result<Option<$crate::backend::oidc::GrantRow>> {
                const FAILED: &str = "reading an OpenID Connect authorization";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(concat!(
                    "SELECT ",
                    grant_columns!(),
                    " FROM oidc_grants g JOIN users u ON u.id = g.user_id \
                     WHERE g.id = $1 AND g.revoked_at IS NULL"
                ))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }

            async fn add_oidc_tokens(
                &self,
                grant: i64,
                tokens: &[(String, &'static str, fediversity_engine::clock::Millis)],
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<()> {
                const FAILED: &str = "recording OpenID Connect tokens";
                let mut conn = self.connection(FAILED).await?;
                let mut tx = begin_write(&mut *conn).await.map_err(self.failed(FAILED))?;
                sqlx::query("DELETE FROM oidc_tokens WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                for (hash, kind, expires_at) in tokens {
                    sqlx::query(
                        "INSERT INTO oidc_tokens (token_hash, grant_id, kind, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(hash)
                    .bind(grant)
                    .bind(*kind)
                    .bind(now)
                    .bind(*expires_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.failed(FAILED))?;
                }
                tx.commit().await.map_err(self.failed(FAILED))
            }

            async fn access_token_grant(
                &self,
                token_hash: &str,
                now: fediversity_engine::clock::Millis,
            ) -> $crate::error::Result<Option<$crate::backend::oidc::GrantRow>> {
                const FAILED: &str = "reading an OpenID Connect access token";
                let mut conn = self.connection(FAILED).await?;
                sqlx::query_as(concat!(
                    "SELECT ",
                    grant_columns!(),
                    " FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
                     JOIN users u ON u.id = g.user_id WHERE t.token_hash = $1 \
                     AND t.kind = 'access' AND t.expires_at > $2 AND g.revoked_at IS NULL"
                ))
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(self.failed(FAILED))
            }
        }
    };
}
