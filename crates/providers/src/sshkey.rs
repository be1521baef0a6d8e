//! The `sshkey` provider: Ed25519 deployment keys.
//!
//! Inputs `{"algorithm": "ed25519", "comment": "…"}`; outputs `public_key` (the OpenSSH
//! one-line form, for cloud-init's `authorized_keys`) and `private_key` (sensitive, OpenSSH
//! PEM, for the deployer). Like a generated secret, the key exists only in the platform's
//! encrypted state: `read` hands back the recorded outputs, and a changed comment is written
//! into the same key rather than making a new one. A new algorithm makes a new key.

use async_trait::async_trait;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::graph::ResourceAddress;
use serde::Deserialize;
use serde_json::{Value, json};
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};

use crate::inputs::parse_inputs;
use crate::sensitive::SecretString;

/// The provider name resources use.
pub const NAME: &str = "sshkey";

/// The inputs of a key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyInputs {
    algorithm: String,
    #[serde(default)]
    comment: String,
}

impl KeyInputs {
    fn parse(ctx: &CallContext, inputs: &Value) -> ProviderResult<Self> {
        let parsed: Self = parse_inputs(&ctx.address, NAME, inputs)?;
        if parsed.algorithm != "ed25519" {
            return Err(ProviderError::permanent(format!(
                "{}: algorithm `{}` is not supported: use ed25519",
                ctx.address, parsed.algorithm
            )));
        }
        Ok(parsed)
    }
}

/// A new Ed25519 key with `comment`.
fn generate(comment: &str) -> ProviderResult<PrivateKey> {
    let seed: [u8; 32] = crate::secret::random_array()?;
    PrivateKey::new(
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)),
        comment,
    )
    .map_err(|e| ProviderError::permanent(format!("cannot make an Ed25519 key: {e}")))
}

/// The outputs for `key`.
fn key_outputs(key: &PrivateKey) -> ProviderResult<Outputs> {
    let encoding =
        |e: ssh_key::Error| ProviderError::permanent(format!("cannot encode an SSH key: {e}"));
    let private = SecretString::new(key.to_openssh(LineEnding::LF).map_err(encoding)?.as_str());
    let public = key.public_key().to_openssh().map_err(encoding)?;
    let mut outputs = Outputs::default();
    outputs
        .values
        .insert("public_key".to_owned(), json!(public));
    outputs
        .values
        .insert("private_key".to_owned(), json!(private.into_exposed()));
    outputs.sensitive.insert("private_key".to_owned());
    Ok(outputs)
}

/// The recorded key, if the record holds one that parses.
fn recorded_key(recorded: &Outputs) -> Option<PrivateKey> {
    let pem = recorded.values.get("private_key")?.as_str()?;
    PrivateKey::from_openssh(pem).ok()
}

/// The `sshkey` provider.
#[derive(Clone, Debug, Default)]
pub struct SshKeyProvider;

impl SshKeyProvider {
    /// The provider.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Provider for SshKeyProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn replace_on(&self, _address: &ResourceAddress) -> &[&str] {
        &["algorithm"]
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs = KeyInputs::parse(ctx, inputs)?;
        key_outputs(&generate(&inputs.comment)?)
    }

    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        KeyInputs::parse(ctx, inputs)?;
        // The key lives only in the platform's state; without a record it is lost and is made
        // anew (nothing outside the platform holds it yet).
        Ok(recorded.map(|outputs| {
            let comment = recorded_key(outputs).map(|key| key.comment().to_owned());
            Observed {
                inputs: comment.map_or_else(|| json!({}), |c| json!({"comment": c})),
                outputs: outputs.clone(),
            }
        }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        let inputs = KeyInputs::parse(ctx, inputs)?;
        let key = match recorded_key(recorded) {
            Some(mut key) => {
                key.set_comment(inputs.comment);
                key
            }
            None => generate(&inputs.comment)?,
        };
        key_outputs(&key)
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        Ok(crate::kept_in_state::deletion(
            &ctx.address,
            "key",
            retention,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::tests::ctx;

    #[tokio::test]
    async fn the_private_key_parses_back_and_matches_the_public_key() {
        let c = ctx("sshkey.deploy");
        let inputs = json!({"algorithm": "ed25519", "comment": "fediversity-deploy@example-org"});
        let out = SshKeyProvider::new().create(&c, &inputs).await.unwrap();
        assert_eq!(out.sensitive.iter().collect::<Vec<_>>(), ["private_key"]);
        let pem = out.values["private_key"].as_str().unwrap();
        assert!(
            pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            "not PEM"
        );
        let private = PrivateKey::from_openssh(pem).unwrap();
        let public_line = out.values["public_key"].as_str().unwrap();
        assert!(public_line.starts_with("ssh-ed25519 "));
        assert!(public_line.ends_with(" fediversity-deploy@example-org"));
        let public = ssh_key::PublicKey::from_openssh(public_line).unwrap();
        assert_eq!(private.public_key().key_data(), public.key_data());
        assert_eq!(private.comment(), "fediversity-deploy@example-org");
    }

    #[tokio::test]
    async fn keys_are_new_each_time_and_kept_on_update() {
        let p = SshKeyProvider::new();
        let c = ctx("sshkey.deploy");
        let inputs = json!({"algorithm": "ed25519", "comment": "a"});
        let one = p.create(&c, &inputs).await.unwrap();
        let two = p.create(&c, &inputs).await.unwrap();
        assert_ne!(one.values["public_key"], two.values["public_key"]);
        let read = p.read(&c, &inputs, Some(&one)).await.unwrap().unwrap();
        assert_eq!(read.outputs, one);
        assert_eq!(read.inputs, json!({"comment": "a"}));
        assert!(p.read(&c, &inputs, None).await.unwrap().is_none());
        let renamed = p
            .update(&c, &json!({"algorithm": "ed25519", "comment": "b"}), &one)
            .await
            .unwrap();
        let before =
            ssh_key::PublicKey::from_openssh(one.values["public_key"].as_str().unwrap()).unwrap();
        let after =
            ssh_key::PublicKey::from_openssh(renamed.values["public_key"].as_str().unwrap())
                .unwrap();
        assert_eq!(before.key_data(), after.key_data());
        assert_eq!(after.comment(), "b");
    }

    #[tokio::test]
    async fn other_algorithms_are_refused() {
        let error = SshKeyProvider::new()
            .create(&ctx("sshkey.deploy"), &json!({"algorithm": "rsa"}))
            .await
            .unwrap_err();
        assert!(error.message.contains("use ed25519"), "{}", error.message);
    }

    #[test]
    fn replacing_on_algorithm() {
        let address: ResourceAddress = "sshkey.deploy".parse().unwrap();
        assert_eq!(SshKeyProvider::new().replace_on(&address), ["algorithm"]);
    }
}
