//! The panel's accounts: users (an operator's, or the hosting provider's administrators),
//! their sessions and their API tokens. The store keeps what the panel decided; hashing
//! passwords and making session ids and tokens is the panel's work, so no secret in clear ever
//! reaches these tables.

use fediversity_engine::clock::Millis;
use fediversity_model::names::OperatorId;

use crate::backend::accounts::{NewUserRow, SessionRow, UserCreated, UserRow};
use crate::error::{Error, Result, corrupt};
use crate::store::Store;

/// A user's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub i64);

/// What a user may see and do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A member of one operator: sees that operator's services and deployments only.
    Operator(OperatorId),
    /// The hosting provider's administrator: sees every operator.
    Admin,
}

/// A user as the panel needs it to sign someone in.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The (lower-cased) e-mail address it signs in with.
    pub email: String,
    /// The argon2id hash of its password, in PHC string format.
    pub password_hash: String,
    /// What it may see.
    pub role: Role,
}

/// Never prints the password hash: it is an offline-guessing target.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A live session and its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who is signed in.
    pub user: User,
    /// The token every form of this session must carry.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: Millis,
}

impl Store {
    /// Registers a new operator and its first user, together: a sign-up either makes both or
    /// neither. Fails with [`Error::OperatorExists`] or [`Error::EmailTaken`].
    pub async fn sign_up(
        &self,
        operator: &OperatorId,
        email: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<UserId> {
        let row = NewUserRow::sign_up(operator, email, password_hash, None, now);
        self.create_user(row, Some(operator)).await
    }

    /// Creates a hosting-provider administrator. Fails with [`Error::EmailTaken`].
    pub async fn create_admin(
        &self,
        email: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<UserId> {
        let row = NewUserRow {
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            role: "admin",
            operator: None,
            new_operator: false,
            invitation: None,
            now,
        };
        self.create_user(row, None).await
    }

    pub(crate) async fn create_user(
        &self,
        row: NewUserRow,
        operator: Option<&OperatorId>,
    ) -> Result<UserId> {
        let email = row.email.clone();
        let created = self
            .in_own_task(|queries| async move { queries.create_user(row).await })
            .await?;
        match (created, operator) {
            (UserCreated::Created(id), _) => Ok(UserId(id)),
            (UserCreated::EmailTaken, _) => Err(Error::EmailTaken(email)),
            (UserCreated::InvitationRefused, _) => Err(Error::InvitationRefused),
            (UserCreated::OperatorTaken, Some(operator)) => {
                Err(Error::OperatorExists(operator.clone()))
            }
            (UserCreated::OperatorTaken, None) => Err(corrupt("user", "no operator to take")),
        }
    }

    /// The user who signs in with `email` (lower-cased by the caller).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.queries()
            .user_by_email(email)
            .await?
            .map(user_from_row)
            .transpose()
    }

    /// Opens a session for `user` until `expires_at`, keyed by the hash of its id (the id
    /// itself only ever lives in the user's cookie). Expired sessions are forgotten here.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        csrf_token: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        self.queries()
            .create_session(id_hash, user.0, csrf_token, now, expires_at)
            .await
    }

    /// The session keyed by `id_hash`, unless it has expired at `now`.
    pub async fn session(&self, id_hash: &str, now: Millis) -> Result<Option<Session>> {
        let Some(row) = self.queries().session(id_hash, now).await? else {
            return Ok(None);
        };
        let SessionRow {
            id,
            email,
            password_hash,
            role,
            operator,
            csrf_token,
            expires_at,
        } = row;
        let user = user_from_row(UserRow {
            id,
            email,
            password_hash,
            role,
            operator,
        })?;
        Ok(Some(Session {
            user,
            csrf_token,
            expires_at,
        }))
    }

    /// The e-mail addresses of the operator's users (not the administrators'), sorted: whom
    /// the platform writes to about the operator, besides its configured admin contact.
    pub async fn operator_emails(&self, operator: &OperatorId) -> Result<Vec<String>> {
        self.queries().operator_emails(operator.as_str()).await
    }

    /// Removes every user of the operator, signing them out: the end of an account deletion.
    /// The operator's history (configurations, deployments, events) is kept. Returns how many
    /// users were removed.
    pub async fn delete_users(&self, operator: &OperatorId) -> Result<u64> {
        let id = operator.to_string();
        self.in_own_task(|queries| async move { queries.delete_users(&id).await })
            .await
    }

    /// Records an API token of `user`, keyed by its hash (the token itself is shown to the
    /// user once and never stored); `name` says what it is for.
    pub async fn create_api_token(
        &self,
        id_hash: &str,
        user: UserId,
        name: &str,
        now: Millis,
    ) -> Result<()> {
        self.queries()
            .create_api_token(id_hash, user.0, name, now)
            .await
    }

    /// The user whose API token has the hash `id_hash`.
    pub async fn api_token_user(&self, id_hash: &str) -> Result<Option<User>> {
        self.queries()
            .api_token_user(id_hash)
            .await?
            .map(user_from_row)
            .transpose()
    }

    /// Ends the session keyed by `id_hash` (nothing if there is none).
    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.queries().delete_session(id_hash).await
    }
}

impl NewUserRow {
    /// A new operator's first user, made with the operator, using `invitation` (a hash) if any.
    pub(crate) fn sign_up(
        operator: &OperatorId,
        email: &str,
        password_hash: &str,
        invitation: Option<&str>,
        now: Millis,
    ) -> Self {
        Self {
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            role: "operator",
            operator: Some(operator.to_string()),
            new_operator: true,
            invitation: invitation.map(str::to_owned),
            now,
        }
    }
}

pub(crate) fn user_from_row(row: UserRow) -> Result<User> {
    let role = match (row.role.as_str(), row.operator) {
        ("admin", None) => Role::Admin,
        ("operator", Some(id)) => {
            Role::Operator(OperatorId::try_from(id).map_err(|e| corrupt("operator id", e))?)
        }
        (role, _) => return Err(corrupt("user role", role)),
    };
    Ok(User {
        id: UserId(row.id),
        email: row.email,
        password_hash: row.password_hash,
        role,
    })
}
