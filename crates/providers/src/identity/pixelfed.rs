//! De-provisioning on Pixelfed: Pixelfed documents no HTTP admin API that suspends or
//! deletes an account (its documented admin tools are the web dashboard and the server's
//! `php artisan user:*` commands; its Mastodon-compatible API has no admin part). So the
//! sync does not guess an undocumented endpoint: it reports what a person has to do. The same
//! goes for the administrator role, which `php artisan user:admin` gives or takes.

/// What a person does to remove `username` from Pixelfed.
pub fn deprovision(username: &str) -> String {
    format!(
        "Pixelfed has no documented admin API: suspend or delete `{username}` in Pixelfed's \
         admin dashboard, or with `php artisan user:delete {username}` on the Pixelfed host"
    )
}

/// What a person does to give (`admin`) or take Pixelfed's administrator role from
/// `username`.
pub fn set_role(username: &str, admin: bool) -> String {
    let what = if admin {
        format!("give `{username}` the administrator role")
    } else {
        format!("take the administrator role from `{username}`")
    };
    format!(
        "Pixelfed has no documented admin API: {what} in Pixelfed's admin dashboard, or with \
         `php artisan user:admin {username}` on the Pixelfed host (it asks whether to add or \
         remove the role)"
    )
}
