//! The `oidc` provider: the panel's OpenID Connect clients, one per operator service
//! (`oidc_client.<service>`), made when the operator deploys.
//!
//! Inputs: `{"redirect_uris": ["https://…"], "client_secret": "…"}` (the secret from the
//! service's own `secret` resource). Outputs: `{"client_id": "<operator>-<service>",
//! "issuer": "<the panel's public URL>"}`. The client id is made from the resource's identity,
//! so a create interrupted by a crash is found again by `read`, and a create run twice updates
//! the same client. The store keeps only the secret's SHA-256 (the secret is 48 random
//! characters: a slow hash would add nothing). Deleting the client revokes every token it was
//! issued.

use std::sync::Arc;

use async_trait::async_trait;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::operator::ServiceKind;
use fediversity_store::{OidcClient, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::id_hash;

/// The provider name resources use.
pub const NAME: &str = "oidc";

/// The shortest client secret accepted: the configurator generates 48 characters.
const MIN_SECRET: usize = 32;

/// The panel's OpenID Connect clients, in its store.
pub struct OidcClientProvider {
    store: Arc<Store>,
    issuer: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OidcClientProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClientProvider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The `oidc` provider on `store`, for the panel reached at `public_url` (the issuer the
/// clients are told; a trailing `/` is dropped).
pub fn oidc_client_provider(store: Arc<Store>, public_url: &str) -> Arc<dyn Provider> {
    Arc::new(OidcClientProvider {
        store,
        issuer: public_url.trim_end_matches('/').to_owned(),
        clock: Arc::new(SystemClock),
    })
}

/// The inputs. No `Debug`: it holds the secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientInputs {
    redirect_uris: Vec<String>,
    client_secret: String,
}

impl OidcClientProvider {
    /// The client id of `ctx`'s resource: `<operator>-<service>`.
    fn client_id(ctx: &CallContext) -> ProviderResult<String> {
        let service = ServiceKind::ALL
            .into_iter()
            .find(|service| service.as_str() == ctx.address.name())
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "{}: the name must be a service (mastodon, pixelfed or peertube)",
                    ctx.address
                ))
            })?;
        Ok(format!("{}-{}", ctx.operator, service.as_str()))
    }

    fn client(ctx: &CallContext, inputs: &Value) -> ProviderResult<OidcClient> {
        let refuse = |why: String| ProviderError::permanent(format!("{}: {why}", ctx.address));
        let parsed = ClientInputs::deserialize(inputs)
            .map_err(|e| refuse(format!("the inputs of the `{NAME}` provider: {e}")))?;
        if parsed.redirect_uris.is_empty() {
            return Err(refuse("`redirect_uris` needs at least one URI".to_owned()));
        }
        for uri in &parsed.redirect_uris {
            check_redirect_uri(uri).map_err(|why| refuse(format!("redirect URI `{uri}` {why}")))?;
        }
        if parsed.client_secret.chars().count() < MIN_SECRET {
            return Err(refuse(format!(
                "`client_secret` must have at least {MIN_SECRET} characters"
            )));
        }
        Ok(OidcClient {
            client_id: Self::client_id(ctx)?,
            operator: ctx.operator.clone(),
            secret_hash: id_hash(&parsed.client_secret),
            redirect_uris: parsed.redirect_uris,
        })
    }

    fn outputs(&self, client_id: String) -> Outputs {
        Outputs {
            values: [
                ("client_id".to_owned(), json!(client_id)),
                ("issuer".to_owned(), json!(self.issuer)),
            ]
            .into(),
            sensitive: Default::default(),
        }
    }

    async fn put(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let client = Self::client(ctx, inputs)?;
        self.store
            .put_oidc_client(&client, self.clock.now())
            .await
            .map_err(|e| store_failed(ctx, &e))?;
        Ok(self.outputs(client.client_id))
    }
}

/// Why `uri` cannot be a redirect URI: an absolute `https` URL without a fragment (RFC 6749
/// §3.1.2), where the services receive the code.
fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(uri).map_err(|_| "is not an absolute URL")?;
    if url.scheme() != "https" {
        return Err("must use https");
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    Ok(())
}

/// A store failure: the database is down or busy (transient), or holds something it should
/// not (permanent).
fn store_failed(ctx: &CallContext, error: &fediversity_store::Error) -> ProviderError {
    let message = format!("{}: the panel's store: {error}", ctx.address);
    match error {
        fediversity_store::Error::Corrupt { .. } => ProviderError::permanent(message),
        _ => ProviderError::transient(message),
    }
}

#[async_trait]
impl Provider for OidcClientProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        self.put(ctx, inputs).await
    }

    async fn read(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let client_id = Self::client_id(ctx)?;
        let found = self
            .store
            .oidc_client(&client_id)
            .await
            .map_err(|e| store_failed(ctx, &e))?;
        // The secret cannot be observed (only its hash is kept), so it is left out.
        Ok(found.map(|client| Observed {
            inputs: json!({"redirect_uris": client.redirect_uris}),
            outputs: self.outputs(client.client_id),
        }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.put(ctx, inputs).await
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _recorded: &Outputs,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let client_id = Self::client_id(ctx)?;
        self.store
            .delete_oidc_client(&ctx.operator, &client_id)
            .await
            .map_err(|e| store_failed(ctx, &e))?;
        Ok(Deletion::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_absolute_https_without_fragment() {
        assert_eq!(
            check_redirect_uri("https://social.uni.example/auth/auth/openid_connect/callback"),
            Ok(())
        );
        assert_eq!(
            check_redirect_uri("http://social.uni.example/cb"),
            Err("must use https")
        );
        assert_eq!(
            check_redirect_uri("https://social.uni.example/cb#x"),
            Err("must not have a fragment")
        );
        assert_eq!(check_redirect_uri("/cb"), Err("is not an absolute URL"));
    }
}
