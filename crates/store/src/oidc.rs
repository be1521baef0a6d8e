//! What the panel's OpenID Connect provider remembers: its clients (one per operator service),
//! its signing keys, and the grants (authorization codes) with the tokens they led to.
//!
//! The panel makes every secret and decides every rule; the store keeps hashes of client
//! secrets, codes and tokens only, seals the private signing keys under the platform key, and
//! makes the checks that must be atomic: a code or refresh token is spent once, and spending
//! one a second time revokes its grant with everything issued under it.

use fediversity_engine::clock::Millis;
use fediversity_model::names::OperatorId;

use crate::User;
use crate::accounts::{UserId, user_from_row};
use crate::backend::accounts::UserRow;
use crate::backend::oidc::{ClientRow, GrantRow, NewGrantRow, Presented};
use crate::error::{Error, Result, corrupt};
use crate::store::Store;

/// The associated data private signing keys are sealed with: no operator id can spell it, so
/// a sealed key does not open as any operator's value.
const SIGNING_KEY_CONTEXT: &str = "oidc:signing-key";

/// A client of the provider: one operator service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcClient {
    /// `<operator>-<service>`.
    pub client_id: String,
    /// The operator whose service it is: only its users may sign in there.
    pub operator: OperatorId,
    /// The SHA-256 (hex) of the client secret.
    pub secret_hash: String,
    /// The redirect URIs the client may use, compared exactly.
    pub redirect_uris: Vec<String>,
}

/// A key ID tokens are signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Its key id (`kid`).
    pub kid: String,
    /// The private key (PKCS#8 DER), opened.
    pub private_key: Vec<u8>,
    /// When it was made.
    pub created_at: Millis,
    /// When a newer key replaced it; `None` for the current key.
    pub retired_at: Option<Millis>,
}

/// Never prints the private key.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A grant's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantId(pub i64);

/// A sign-in of a user at a client, to record when the code is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGrant {
    /// The SHA-256 (hex) of the authorization code.
    pub code_hash: String,
    /// The client.
    pub client_id: String,
    /// Who signed in.
    pub user: UserId,
    /// The redirect URI of the authorization request, which the token request must repeat.
    pub redirect_uri: String,
    /// The PKCE challenge (S256).
    pub code_challenge: String,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// The client's nonce, for the ID token.
    pub nonce: Option<String>,
    /// When the user signed in.
    pub auth_time: Millis,
    /// When the code stops being accepted.
    pub code_expires_at: Millis,
}

/// A live grant, as the token and userinfo endpoints need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Its id.
    pub id: GrantId,
    /// The client it was made for.
    pub client_id: String,
    /// The user who signed in.
    pub user: User,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The PKCE challenge.
    pub code_challenge: String,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// The client's nonce.
    pub nonce: Option<String>,
    /// When the user signed in.
    pub auth_time: Millis,
}

/// What presenting an authorization code or a refresh token came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// It was good and is now spent: its grant.
    Redeemed(Box<Grant>),
    /// It had been spent already: its grant, and every token issued under it, is revoked.
    Replayed,
    /// No such live code or token for this client.
    Unknown,
}

/// Whether a token is an access or a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Presented at the userinfo endpoint.
    Access,
    /// Exchanged once for new tokens.
    Refresh,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

/// A token to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    /// The SHA-256 (hex) of the token.
    pub hash: String,
    /// Access or refresh.
    pub kind: TokenKind,
    /// When it stops being accepted.
    pub expires_at: Millis,
}

impl Store {
    /// Creates the client, or updates its secret and redirect URIs. Fails with
    /// [`Error::Corrupt`] if the id belongs to another operator (ids are made from the
    /// operator's, so that means a bug or a hand-edited database).
    pub async fn put_oidc_client(&self, client: &OidcClient, now: Millis) -> Result<()> {
        let redirect_uris =
            serde_json::to_string(&client.redirect_uris).map_err(|source| Error::Serialise {
                what: "redirect URIs",
                source,
            })?;
        let row = ClientRow {
            client_id: client.client_id.clone(),
            operator: client.operator.to_string(),
            secret_hash: client.secret_hash.clone(),
            redirect_uris,
        };
        if self.queries.put_oidc_client(&row, now).await? {
            Ok(())
        } else {
            Err(corrupt(
                "OpenID Connect client",
                format!("`{}` belongs to another operator", client.client_id),
            ))
        }
    }

    /// The client with this id.
    pub async fn oidc_client(&self, client_id: &str) -> Result<Option<OidcClient>> {
        let Some(row) = self.queries.oidc_client(client_id).await? else {
            return Ok(None);
        };
        Ok(Some(OidcClient {
            client_id: row.client_id,
            operator: OperatorId::try_from(row.operator).map_err(|e| corrupt("operator id", e))?,
            secret_hash: row.secret_hash,
            redirect_uris: serde_json::from_str(&row.redirect_uris)
                .map_err(|e| corrupt("redirect URIs", e))?,
        }))
    }

    /// Removes the operator's client, with every grant and token issued to it; false if it
    /// had none by that id.
    pub async fn delete_oidc_client(&self, operator: &OperatorId, client_id: &str) -> Result<bool> {
        let (operator, client_id) = (operator.to_string(), client_id.to_owned());
        self.in_own_task(|queries| async move {
            queries.delete_oidc_client(&operator, &client_id).await
        })
        .await
    }

    /// Every signing key, newest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        self.queries
            .signing_keys()
            .await?
            .into_iter()
            .map(|row| {
                Ok(SigningKey {
                    private_key: self
                        .sealer
                        .open_bytes(SIGNING_KEY_CONTEXT, &row.private_key)?,
                    kid: row.kid,
                    created_at: row.created_at,
                    retired_at: row.retired_at,
                })
            })
            .collect()
    }

    /// Makes `kid` the current signing key: every other key is retired at `now`, and keys
    /// retired before `forget_before` (their tokens have all expired) are forgotten.
    pub async fn rotate_signing_key(
        &self,
        kid: &str,
        private_key: &[u8],
        now: Millis,
        forget_before: Millis,
    ) -> Result<()> {
        let sealed = self.sealer.seal_bytes(SIGNING_KEY_CONTEXT, private_key)?;
        let kid = kid.to_owned();
        self.in_own_task(|queries| async move {
            queries
                .rotate_signing_key(&kid, &sealed, now, forget_before)
                .await
        })
        .await
    }

    /// Records a grant when its code is issued.
    pub async fn create_oidc_grant(&self, grant: &NewGrant, now: Millis) -> Result<()> {
        let row = NewGrantRow {
            code_hash: grant.code_hash.clone(),
            client_id: grant.client_id.clone(),
            user: grant.user.0,
            redirect_uri: grant.redirect_uri.clone(),
            code_challenge: grant.code_challenge.clone(),
            scope: grant.scope.clone(),
            nonce: grant.nonce.clone(),
            auth_time: grant.auth_time,
            code_expires_at: grant.code_expires_at,
        };
        self.queries.create_oidc_grant(&row, now).await
    }

    /// Spends the code with this hash. A code already spent revokes its grant.
    pub async fn redeem_oidc_code(&self, code_hash: &str, now: Millis) -> Result<Redemption> {
        let code_hash = code_hash.to_owned();
        let presented = self
            .in_own_task(|queries| async move { queries.take_oidc_code(&code_hash, now).await })
            .await?;
        self.redemption(presented).await
    }

    /// Spends the refresh token with this hash, if `client_id` was issued it. A token already
    /// spent revokes its grant.
    pub async fn redeem_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: Millis,
    ) -> Result<Redemption> {
        let (token_hash, client_id) = (token_hash.to_owned(), client_id.to_owned());
        let presented = self
            .in_own_task(|queries| async move {
                queries
                    .use_refresh_token(&token_hash, &client_id, now)
                    .await
            })
            .await?;
        self.redemption(presented).await
    }

    async fn redemption(&self, presented: Presented) -> Result<Redemption> {
        Ok(match presented {
            Presented::Fresh(id) => match self.queries.oidc_grant(id).await? {
                Some(row) => Redemption::Redeemed(Box::new(grant_from_row(row)?)),
                // Revoked in between by a replay: what it would issue is void.
                None => Redemption::Replayed,
            },
            Presented::Replayed => Redemption::Replayed,
            Presented::Unknown => Redemption::Unknown,
        })
    }

    /// Records tokens issued under a grant (and forgets expired ones). Tokens of a grant
    /// revoked meanwhile are recorded but never honoured.
    pub async fn add_oidc_tokens(
        &self,
        grant: GrantId,
        tokens: &[NewToken],
        now: Millis,
    ) -> Result<()> {
        let rows: Vec<_> = tokens
            .iter()
            .map(|token| (token.hash.clone(), token.kind.as_str(), token.expires_at))
            .collect();
        self.in_own_task(
            |queries| async move { queries.add_oidc_tokens(grant.0, &rows, now).await },
        )
        .await
    }

    /// The grant of a live access token, unless it was revoked.
    pub async fn oidc_access_token(&self, token_hash: &str, now: Millis) -> Result<Option<Grant>> {
        self.queries
            .access_token_grant(token_hash, now)
            .await?
            .map(grant_from_row)
            .transpose()
    }
}

fn grant_from_row(row: GrantRow) -> Result<Grant> {
    let user = user_from_row(UserRow {
        id: row.user_id,
        email: row.email,
        password_hash: row.password_hash,
        role: row.role,
        operator: row.operator,
    })?;
    Ok(Grant {
        id: GrantId(row.id),
        client_id: row.client_id,
        user,
        redirect_uri: row.redirect_uri,
        code_challenge: row.code_challenge,
        scope: row.scope,
        nonce: row.nonce,
        auth_time: row.auth_time,
    })
}
