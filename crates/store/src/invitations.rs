//! Invitations to sign up: how a hosting provider that runs the panel with sign-up by
//! invitation decides who becomes an operator. Like API tokens, the token in the link is made
//! by the panel and only its hash reaches the store.

use fediversity_engine::clock::Millis;
use fediversity_model::names::OperatorId;

use crate::accounts::UserId;
use crate::backend::accounts::{InvitationRow, NewUserRow};
use crate::error::{Result, corrupt};
use crate::store::Store;

/// An invitation's id: what the administrators' page revokes it by (never its token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvitationId(pub i64);

/// An invitation as the administrators' page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// Its id.
    pub id: InvitationId,
    /// Whom it is for, in the administrator's words.
    pub note: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops being usable.
    pub expires_at: Millis,
    /// When it was used, and the operator it made.
    pub used: Option<(Millis, OperatorId)>,
    /// When an administrator revoked it.
    pub revoked_at: Option<Millis>,
}

impl Invitation {
    /// Whether it could still be used at `now`, and so revoked.
    pub fn usable(&self, now: Millis) -> bool {
        self.used.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}

impl Store {
    /// Records an invitation usable until `expires_at`, keyed by the hash of its token (the
    /// token is shown to the administrator once and never stored).
    pub async fn create_invitation(
        &self,
        id_hash: &str,
        note: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<InvitationId> {
        self.queries()
            .create_invitation(id_hash, note, now, expires_at)
            .await
            .map(InvitationId)
    }

    /// Every invitation, newest first.
    pub async fn invitations(&self) -> Result<Vec<Invitation>> {
        self.queries()
            .invitations()
            .await?
            .into_iter()
            .map(invitation_from_row)
            .collect()
    }

    /// Whether the invitation with the hash `id_hash` is unused, unrevoked and unexpired at
    /// `now`: what the sign-up page says before the form is filled in. Only the sign-up itself
    /// ([`Store::sign_up_invited`]) decides, atomically.
    pub async fn invitation_usable(&self, id_hash: &str, now: Millis) -> Result<bool> {
        self.queries().invitation_usable(id_hash, now).await
    }

    /// Revokes an unused invitation. Returns false if there is none with this id, or if it was
    /// used or revoked already.
    pub async fn revoke_invitation(&self, id: InvitationId, now: Millis) -> Result<bool> {
        self.queries().revoke_invitation(id.0, now).await
    }

    /// Like [`Store::sign_up`], using the invitation with the hash `invitation` in the same
    /// transaction: the account is made only if the invitation is unused, unrevoked and
    /// unexpired at `now`, and then it is used, even against concurrent sign-ups with it.
    /// Fails with [`crate::Error::InvitationRefused`] (checked first, so that the refusal
    /// tells nothing about taken ids), [`crate::Error::OperatorExists`] or
    /// [`crate::Error::EmailTaken`]; the invitation stays unused when the sign-up fails.
    pub async fn sign_up_invited(
        &self,
        invitation: &str,
        operator: &OperatorId,
        email: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<UserId> {
        let row = NewUserRow::sign_up(operator, email, password_hash, Some(invitation), now);
        self.create_user(row, Some(operator)).await
    }
}

fn invitation_from_row(row: InvitationRow) -> Result<Invitation> {
    let used = match (row.used_at, row.used_by) {
        (Some(at), Some(by)) => Some((
            at,
            OperatorId::try_from(by).map_err(|e| corrupt("invitation's operator", e))?,
        )),
        (None, None) => None,
        _ => return Err(corrupt("invitation", "used_at and used_by disagree")),
    };
    Ok(Invitation {
        id: InvitationId(row.id),
        note: row.note,
        created_at: row.created_at,
        expires_at: row.expires_at,
        used,
        revoked_at: row.revoked_at,
    })
}
