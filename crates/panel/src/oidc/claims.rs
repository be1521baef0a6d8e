//! What the provider says about a user: a stable subject, a user name Mastodon accepts, the
//! e-mail address and the groups, each behind its scope.

use fediversity_store::{Role, User};
use serde_json::{Map, Value, json};

/// Mastodon's limit on user names.
const MAX_USERNAME: usize = 30;

/// The group every member of an operator is in: the services map it to their admin role
/// (the operator's panel members are its services' administrators).
pub(crate) const ADMIN_GROUP: &str = "admins";

/// The claim that carries PeerTube's role for a user, in the one shape PeerTube's OpenID
/// Connect plugin reads (its `role-property` setting names the claim; `Administrator#tube` in
/// `tube.roles` gives the administrator role when the plugin makes the account): the plugin
/// maps no group, so the panel says it in the plugin's words, beside `groups`.
pub(crate) const PEERTUBE_ROLE_CLAIM: &str = "peertube_role";

/// The user name a service should give `email`'s owner: the local part, lower case, with
/// every run of characters outside `[a-z0-9]` turned into one `_` (Mastodon accepts only
/// `[a-z0-9_]`, so `first.last` and `first-last` would be refused), without leading or
/// trailing `_`, at most 30 characters; `user` when nothing is left.
pub(crate) fn preferred_username(email: &str) -> String {
    let local = email.split('@').next().unwrap_or_default();
    let mut name = String::new();
    for c in local.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
    }
    name.truncate(MAX_USERNAME);
    let name = name.trim_end_matches('_');
    if name.is_empty() {
        "user".to_owned()
    } else {
        name.to_owned()
    }
}

/// The user's stable subject: its id, which never changes (the e-mail address may).
pub(crate) fn subject(user: &User) -> String {
    user.id.0.to_string()
}

/// The claims `scope` (space-separated) grants about `user`, with `sub`.
pub(crate) fn user_claims(user: &User, scope: &str) -> Map<String, Value> {
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut claims = Map::new();
    claims.insert("sub".to_owned(), json!(subject(user)));
    if scopes.contains(&"profile") {
        let username = preferred_username(&user.email);
        claims.insert("name".to_owned(), json!(username));
        claims.insert("preferred_username".to_owned(), json!(username));
    }
    if scopes.contains(&"email") {
        claims.insert("email".to_owned(), json!(user.email));
        // The panel does not confirm addresses (yet): say so, and let each service decide.
        claims.insert("email_verified".to_owned(), json!(false));
    }
    if scopes.contains(&"groups") {
        let groups: Vec<&str> = match user.role {
            Role::Operator(_) => vec![ADMIN_GROUP],
            Role::Admin => Vec::new(),
        };
        let peertube_roles: Vec<&str> = if groups.contains(&ADMIN_GROUP) {
            vec!["Administrator#tube"]
        } else {
            Vec::new()
        };
        claims.insert("groups".to_owned(), json!(groups));
        claims.insert(
            PEERTUBE_ROLE_CLAIM.to_owned(),
            json!({"tube": {"roles": peertube_roles}}),
        );
    }
    claims
}

#[cfg(test)]
mod tests {
    use fediversity_store::UserId;

    use super::*;

    #[test]
    fn user_names_are_what_mastodon_accepts() {
        for (email, expected) in [
            ("ann@uni.example", "ann"),
            ("Ann.Lee@uni.example", "ann_lee"),
            ("ann-lee@uni.example", "ann_lee"),
            ("ann..--lee+fedi@uni.example", "ann_lee_fedi"),
            ("_ann_@uni.example", "ann"),
            ("José.Núñez@uni.example", "jos_n_ez"),
            ("...@uni.example", "user"),
            (
                "a.very.long.local.part.that.goes.on@uni.example",
                "a_very_long_local_part_that_go",
            ),
            (
                "abcdefghijklmnopqrstuvwxyz0123.x@uni.example",
                "abcdefghijklmnopqrstuvwxyz0123",
            ),
            (
                "abcdefghijklmnopqrstuvwxyz012.x@uni.example",
                "abcdefghijklmnopqrstuvwxyz012",
            ),
        ] {
            let name = preferred_username(email);
            assert_eq!(name, expected, "{email}");
            assert!(name.len() <= MAX_USERNAME);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
        }
    }

    fn user(role: Role) -> User {
        User {
            id: UserId(7),
            email: "Ann.Lee@uni.example".to_owned(),
            password_hash: "h".to_owned(),
            role,
        }
    }

    #[test]
    fn claims_follow_the_scopes() {
        let member = user(Role::Operator("uni".try_into().unwrap()));
        assert_eq!(
            Value::Object(user_claims(&member, "openid")),
            json!({"sub": "7"})
        );
        assert_eq!(
            Value::Object(user_claims(&member, "openid profile email groups")),
            json!({
                "sub": "7", "name": "ann_lee", "preferred_username": "ann_lee",
                "email": "Ann.Lee@uni.example", "email_verified": false, "groups": ["admins"],
                "peertube_role": {"tube": {"roles": ["Administrator#tube"]}}
            })
        );
        let admin = user_claims(&user(Role::Admin), "openid groups");
        assert_eq!(admin["groups"], json!([]));
        assert_eq!(admin["peertube_role"], json!({"tube": {"roles": []}}));
    }
}
