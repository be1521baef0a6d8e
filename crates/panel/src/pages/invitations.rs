//! Invitations to sign up, for a panel whose sign-up is by invitation: the hosting provider's
//! administrators make one per customer, send its link, and may revoke it until it is used.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fediversity_engine::clock::Millis;
use fediversity_store::{Invitation, InvitationId, Role};
use serde::Deserialize;

use super::operators::{Chrome, page};
use crate::AppState;
use crate::auth::{Posted, SignedIn};
use crate::error::PanelError;
use crate::fleet::instant;
use crate::invitations::invite;

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    chrome: Chrome,
    note: String,
    link: String,
    expires: String,
}

/// An invitation as the administrators' page lists it.
pub struct InvitationRow {
    pub id: i64,
    pub note: String,
    pub created: String,
    pub expires: String,
    /// `used by photo-club on …`, `revoked on …`, `expired` or `open`.
    pub state: String,
    /// Whether it can still be revoked.
    pub revocable: bool,
}

/// Every invitation, newest first, as of `now`.
pub(super) async fn rows(state: &AppState, now: Millis) -> Result<Vec<InvitationRow>, PanelError> {
    let invitations = state.store().invitations().await?;
    Ok(invitations.iter().map(|i| row(i, now)).collect())
}

fn row(invitation: &Invitation, now: Millis) -> InvitationRow {
    let state = match (&invitation.used, invitation.revoked_at) {
        (Some((at, operator)), _) => format!("used by {operator} on {}", date(*at)),
        (None, Some(at)) => format!("revoked on {}", date(at)),
        (None, None) if now >= invitation.expires_at => "expired".to_owned(),
        (None, None) => "open".to_owned(),
    };
    InvitationRow {
        id: invitation.id.0,
        note: invitation.note.clone(),
        created: date(invitation.created_at),
        expires: date(invitation.expires_at),
        state,
        revocable: invitation.usable(now),
    }
}

fn date(millis: Millis) -> String {
    instant(millis).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Refuses anyone but the hosting provider's administrators, as if the page did not exist.
fn admin_only(user: &SignedIn) -> Result<(), PanelError> {
    match user.0.user.role {
        Role::Admin => Ok(()),
        Role::Operator(_) => Err(PanelError::NotFound),
    }
}

#[derive(Deserialize)]
pub struct InvitationForm {
    #[serde(default)]
    note: String,
}

/// Makes an invitation and shows its link, this once (only the token's hash is kept).
pub async fn create(
    State(state): State<AppState>,
    user: SignedIn,
    Posted(form): Posted<InvitationForm>,
) -> Result<Response, PanelError> {
    admin_only(&user)?;
    let made = invite(&state, &form.note).await?;
    let view = InvitationPage {
        chrome: Chrome::of(&user),
        note: made.note,
        link: made.link,
        expires: date(made.expires_at),
    };
    page(StatusCode::OK, &view)
}

/// Revokes an unused invitation; one used or revoked already is left as it is.
pub async fn revoke(
    State(state): State<AppState>,
    user: SignedIn,
    Path(id): Path<i64>,
    Posted(_): Posted<serde::de::IgnoredAny>,
) -> Result<Response, PanelError> {
    admin_only(&user)?;
    if state
        .store()
        .revoke_invitation(InvitationId(id), state.now())
        .await?
    {
        tracing::info!(invitation = id, "invitation to sign up revoked");
    }
    Ok(Redirect::to("/operators").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invitations::VALID_FOR;

    fn invitation(used: Option<(Millis, &str)>, revoked_at: Option<Millis>) -> Invitation {
        Invitation {
            id: InvitationId(1),
            note: "Club".to_owned(),
            created_at: 0,
            expires_at: VALID_FOR,
            used: used.map(|(at, op)| (at, op.try_into().unwrap_or_else(|_| unreachable!()))),
            revoked_at,
        }
    }

    #[test]
    fn a_row_says_what_became_of_the_invitation() {
        let open = row(&invitation(None, None), 0);
        assert_eq!((open.state.as_str(), open.revocable), ("open", true));
        let expired = row(&invitation(None, None), VALID_FOR);
        assert_eq!(
            (expired.state.as_str(), expired.revocable),
            ("expired", false)
        );
        let used = row(&invitation(Some((60_000, "club")), None), 0);
        assert_eq!(used.state, "used by club on 1970-01-01 00:01 UTC");
        assert!(!used.revocable);
        let revoked = row(&invitation(None, Some(0)), 0);
        assert_eq!(revoked.state, "revoked on 1970-01-01 00:00 UTC");
        assert!(!revoked.revocable);
        assert_eq!(open.expires, "1970-01-08 00:00 UTC");
    }
}
