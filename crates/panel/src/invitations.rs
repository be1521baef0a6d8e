//! Making an invitation to sign up, for the administrators' page and the API alike: a random
//! token whose hash the store keeps, and the one-time link that carries it.

use fediversity_engine::clock::Millis;
use fediversity_store::InvitationId;

use crate::AppState;
use crate::auth::{id_hash, random_token};
use crate::error::PanelError;

/// How long an invitation can be used: long enough for a customer to get to it, short
/// enough that a forgotten link does not open the platform for good.
pub(crate) const VALID_FOR: Millis = 7 * 24 * 3600 * 1000;
/// The longest note kept.
const MAX_NOTE: usize = 200;

/// An invitation just made: the only time its link exists outside the customer's hands.
pub(crate) struct NewInvitation {
    pub id: InvitationId,
    /// The note as kept (trimmed, at most [`MAX_NOTE`] characters).
    pub note: String,
    /// `<public URL>/sign-up?invitation=<token>`.
    pub link: String,
    pub expires_at: Millis,
}

/// Makes an invitation for `note`, usable for [`VALID_FOR`] from now.
pub(crate) async fn invite(state: &AppState, note: &str) -> Result<NewInvitation, PanelError> {
    let note: String = note.trim().chars().take(MAX_NOTE).collect();
    let token = random_token();
    let now = state.now();
    let expires_at = now + VALID_FOR;
    let id = state
        .store()
        .create_invitation(&id_hash(&token), &note, now, expires_at)
        .await?;
    tracing::info!(invitation = id.0, note = %note, "invitation to sign up created");
    Ok(NewInvitation {
        id,
        note,
        link: link(&state.inner.options.issuer(), &token),
        expires_at,
    })
}

/// The sign-up link of `token` on the panel reached at `base` (its public URL: not the
/// request's `Host`, which the requester chooses).
fn link(base: &str, token: &str) -> String {
    format!("{base}/sign-up?invitation={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_on_the_public_url() {
        assert_eq!(
            link("https://panel.example", "t0k"),
            "https://panel.example/sign-up?invitation=t0k"
        );
    }
}
