//! The `secret` provider: random secrets generated once, and secrets the operator stored.
//!
//! Inputs, one of:
//! - `{"generate": "password", "length": n}` — `n` characters from `A-Za-z0-9`, or from
//!   `"alphabet": "…"` when given (2 to 94 distinct printable ASCII characters, no space);
//! - `{"generate": "hex", "length": n}` — `n` lower-case hexadecimal digits;
//! - `{"generate": "base64", "bytes": n}` — `n` random bytes, standard base64 with padding;
//! - `{"generate": "vapid-keypair"}` — a P-256 key pair for Web Push (VAPID), both halves in
//!   URL-safe base64 with padding, as Mastodon's own generator writes them: `private_key` is
//!   the 32-byte scalar, `public_key` the 65-byte uncompressed point;
//! - `{"operator_secret": "name"}` — a secret the operator stored, from [`OperatorSecrets`];
//! - `{"file": "/absolute/path"}` — a secret the hosting provider keeps in a file on the
//!   machine running the platform, named in `infra.toml` (the SMTP relay's password): one line,
//!   a final newline not part of it.
//!
//! Any of them may add `"rotation": <any value>`: changing it makes a new secret.
//!
//! Outputs: `value` (sensitive), or `private_key` (sensitive) and `public_key`; and
//! `parameters`, what the secret was made from, so that `update` makes a new one only when
//! those change. A generated value exists nowhere but in the platform's encrypted state, so
//! `read` hands back the recorded outputs unchanged (and finds nothing without them). Every
//! random byte comes from the operating system's generator.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::names::{OperatorId, SecretName};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::inputs::parse_inputs;
use crate::sensitive::SecretString;

/// The provider name resources use.
pub const NAME: &str = "secret";

/// The longest secret the provider makes, in characters or bytes.
pub const MAX_LENGTH: usize = 4096;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` bytes from the operating system's random number generator.
pub(crate) fn random_bytes(n: usize) -> ProviderResult<Vec<u8>> {
    let mut bytes = vec![0; n];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        ProviderError::transient(format!(
            "the operating system's random number generator failed: {e}"
        ))
    })?;
    Ok(bytes)
}

/// `N` random bytes.
pub(crate) fn random_array<const N: usize>() -> ProviderResult<[u8; N]> {
    let mut bytes = [0; N];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        ProviderError::transient(format!(
            "the operating system's random number generator failed: {e}"
        ))
    })?;
    Ok(bytes)
}

/// `chars` random lower-case hexadecimal digits.
pub(crate) fn random_hex(chars: usize) -> ProviderResult<String> {
    let bytes = random_bytes(chars.div_ceil(2))?;
    let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    text.truncate(chars);
    Ok(text)
}

/// `length` characters from `alphabet`, each equally likely (bytes at or above the largest
/// multiple of its size are dropped, so no character is favoured).
fn random_password(length: usize, alphabet: &[u8]) -> ProviderResult<String> {
    let limit = 256 - 256 % alphabet.len();
    let mut password = String::with_capacity(length);
    while password.len() < length {
        for byte in random_bytes(length - password.len() + 8)? {
            if usize::from(byte) < limit && password.len() < length {
                password.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
            }
        }
    }
    Ok(password)
}

/// A VAPID key pair: (private scalar, uncompressed public point), URL-safe base64 with padding.
fn vapid_keypair() -> ProviderResult<(SecretString, String)> {
    // A random 32-byte string is a valid P-256 scalar unless it is zero or not below the group
    // order, which happens with probability about 2^-32; try again then.
    for _ in 0..16 {
        let bytes: [u8; 32] = random_array()?;
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            let public = key.public_key().to_encoded_point(false);
            return Ok((
                SecretString::new(URL_SAFE.encode(key.to_bytes())),
                URL_SAFE.encode(public.as_bytes()),
            ));
        }
    }
    Err(ProviderError::transient(
        "could not draw a valid P-256 key: the random number generator looks broken",
    ))
}

/// The inputs as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretInputs {
    #[serde(default)]
    generate: Option<String>,
    #[serde(default)]
    length: Option<usize>,
    #[serde(default)]
    bytes: Option<usize>,
    #[serde(default)]
    operator_secret: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    alphabet: Option<String>,
    #[serde(default)]
    rotation: Option<Value>,
}

/// The characters a password is drawn from: `given`, checked, or `A-Za-z0-9`. `Err` says why
/// `given` cannot be one.
fn password_alphabet(given: Option<&str>) -> Result<Vec<u8>, String> {
    let Some(given) = given else {
        return Ok(ALPHANUMERIC.to_vec());
    };
    let bytes = given.as_bytes();
    if !bytes.iter().all(u8::is_ascii_graphic) {
        return Err("`alphabet` may hold printable ASCII characters only (no space)".to_owned());
    }
    let distinct: std::collections::BTreeSet<&u8> = bytes.iter().collect();
    if distinct.len() != bytes.len() || bytes.len() < 2 {
        return Err("`alphabet` needs at least 2 characters, each once".to_owned());
    }
    Ok(bytes.to_vec())
}

/// What a secret is made from.
#[derive(Clone, Debug, PartialEq)]
enum Recipe {
    Password { length: usize, alphabet: Vec<u8> },
    Hex { length: usize },
    Base64 { bytes: usize },
    VapidKeypair,
    Operator { name: SecretName },
    File { path: PathBuf },
}

impl Recipe {
    fn parse(ctx: &CallContext, inputs: &Value) -> ProviderResult<(Recipe, Value)> {
        let parsed: SecretInputs = parse_inputs(&ctx.address, NAME, inputs)?;
        let refuse = |why: &str| ProviderError::permanent(format!("{}: {why}", ctx.address));
        let size = |value: Option<usize>, field: &str| match value {
            Some(n) if (1..=MAX_LENGTH).contains(&n) => Ok(n),
            Some(_) => Err(refuse(&format!("`{field}` must be from 1 to {MAX_LENGTH}"))),
            None => Err(refuse(&format!("`{field}` is required"))),
        };
        let only = |allowed: &[&str]| {
            let given = [
                ("length", parsed.length.is_some()),
                ("bytes", parsed.bytes.is_some()),
                ("alphabet", parsed.alphabet.is_some()),
            ];
            match given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
                Some((field, _)) => Err(refuse(&format!("`{field}` does not apply here"))),
                None => Ok(()),
            }
        };
        let sources = [
            parsed.generate.is_some(),
            parsed.operator_secret.is_some(),
            parsed.file.is_some(),
        ];
        let several =
            || refuse("give one of `generate`, `operator_secret` and `file`, not several");
        if sources.iter().filter(|given| **given).count() > 1 {
            return Err(several());
        }
        let recipe = match (parsed.generate.as_deref(), &parsed.operator_secret) {
            (Some(_), Some(_)) => return Err(several()),
            (None, None) if parsed.file.is_some() => {
                only(&[])?;
                match parsed.file.clone() {
                    Some(path) if path.is_absolute() => Recipe::File { path },
                    _ => return Err(refuse("`file` must be an absolute path")),
                }
            }
            (None, Some(name)) => {
                only(&[])?;
                let name = SecretName::try_from(name.as_str()).map_err(|e| refuse(&e))?;
                Recipe::Operator { name }
            }
            (Some("password"), None) => {
                only(&["length", "alphabet"])?;
                Recipe::Password {
                    length: size(parsed.length, "length")?,
                    alphabet: password_alphabet(parsed.alphabet.as_deref())
                        .map_err(|why| refuse(&why))?,
                }
            }
            (Some("hex"), None) => {
                only(&["length"])?;
                Recipe::Hex {
                    length: size(parsed.length, "length")?,
                }
            }
            (Some("base64"), None) => {
                only(&["bytes"])?;
                Recipe::Base64 {
                    bytes: size(parsed.bytes, "bytes")?,
                }
            }
            (Some("vapid-keypair"), None) => {
                only(&[])?;
                Recipe::VapidKeypair
            }
            (Some(other), None) => {
                return Err(refuse(&format!(
                    "`generate` is `{other}`; use password, hex, base64 or vapid-keypair"
                )));
            }
            (None, None) => {
                return Err(refuse(
                    "give `generate` (what to make) or `operator_secret` (a stored secret's name)",
                ));
            }
        };
        // What the secret is made from, as recorded in the `parameters` output.
        let mut parameters = match &recipe {
            Recipe::Password { length, .. } => match &parsed.alphabet {
                // Recorded only when given, so the records of earlier passwords still match.
                Some(alphabet) => {
                    json!({"generate": "password", "length": length, "alphabet": alphabet})
                }
                None => json!({"generate": "password", "length": length}),
            },
            Recipe::Hex { length } => json!({"generate": "hex", "length": length}),
            Recipe::Base64 { bytes } => json!({"generate": "base64", "bytes": bytes}),
            Recipe::VapidKeypair => json!({"generate": "vapid-keypair"}),
            Recipe::Operator { name } => json!({"operator_secret": name.as_str()}),
            Recipe::File { path } => json!({"file": path}),
        };
        if let (Some(rotation), Some(map)) = (parsed.rotation, parameters.as_object_mut()) {
            map.insert("rotation".to_owned(), rotation);
        }
        Ok((recipe, parameters))
    }
}

/// Where the secrets operators stored come from: the panel's store in production, a directory
/// in the sandbox.
#[async_trait]
pub trait OperatorSecrets: Send + Sync + fmt::Debug {
    /// The secret `name` of `operator`, or `None` when it is not stored.
    async fn get(
        &self,
        operator: &OperatorId,
        name: &SecretName,
    ) -> ProviderResult<Option<SecretString>>;

    /// How the operator stores the secret `name`, for the error when it is missing.
    fn how_to_store(&self, operator: &OperatorId, name: &SecretName) -> String;
}

/// Operator secrets as files: `<root>/<operator>/operator-secrets/<name>`, one secret per file
/// (a final newline is not part of the secret).
#[derive(Clone, Debug)]
pub struct DirectoryOperatorSecrets {
    root: PathBuf,
}

impl DirectoryOperatorSecrets {
    /// Secrets under `root` (for the sandbox, the sandbox's root).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the secret `name` of `operator` is kept.
    pub fn path(&self, operator: &OperatorId, name: &SecretName) -> PathBuf {
        self.root
            .join(operator.as_str())
            .join("operator-secrets")
            .join(name.as_str())
    }
}

#[async_trait]
impl OperatorSecrets for DirectoryOperatorSecrets {
    async fn get(
        &self,
        operator: &OperatorId,
        name: &SecretName,
    ) -> ProviderResult<Option<SecretString>> {
        let path = self.path(operator, name);
        read_secret_file(
            &path,
            &format!("operator secret `{name}` of operator `{operator}`"),
        )
        .await
    }

    fn how_to_store(&self, operator: &OperatorId, name: &SecretName) -> String {
        let path = self.path(operator, name);
        format!(
            "write it to {path} (one line, mode 0600), e.g. `install -D -m 600 /dev/stdin {path}` \
             and type it followed by Ctrl-D, then apply again",
            path = path.display()
        )
    }
}

/// The one-line secret in `path` (a final newline is not part of it), or `None` when the file
/// does not exist; `what` names the secret in errors.
async fn read_secret_file(path: &Path, what: &str) -> ProviderResult<Option<SecretString>> {
    match tokio::fs::read_to_string(path).await {
        Ok(mut text) => {
            crate::sensitive::strip_final_newline(&mut text);
            if text.is_empty() {
                return Err(ProviderError::permanent(format!(
                    "{what} is stored empty in {}",
                    path.display()
                )));
            }
            Ok(Some(SecretString::new(text)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::files::io_error(
            &format!("read the {what}"),
            path,
            &e,
        )),
    }
}

/// The `secret` provider.
#[derive(Clone, Debug)]
pub struct SecretProvider {
    operator_secrets: Arc<dyn OperatorSecrets>,
}

impl SecretProvider {
    /// A provider reading operator secrets from `operator_secrets`.
    pub fn new(operator_secrets: Arc<dyn OperatorSecrets>) -> Self {
        Self { operator_secrets }
    }

    /// Makes the secret `recipe` describes.
    async fn make(
        &self,
        ctx: &CallContext,
        recipe: &Recipe,
        parameters: Value,
    ) -> ProviderResult<Outputs> {
        let mut outputs = Outputs::default();
        let mut sensitive = |name: &str, value: SecretString| {
            outputs
                .values
                .insert(name.to_owned(), json!(value.into_exposed()));
            outputs.sensitive.insert(name.to_owned());
        };
        match recipe {
            Recipe::Password { length, alphabet } => sensitive(
                "value",
                SecretString::new(random_password(*length, alphabet)?),
            ),
            Recipe::Hex { length } => sensitive("value", SecretString::new(random_hex(*length)?)),
            Recipe::Base64 { bytes } => {
                sensitive(
                    "value",
                    SecretString::new(STANDARD.encode(random_bytes(*bytes)?)),
                );
            }
            Recipe::VapidKeypair => {
                let (private, public) = vapid_keypair()?;
                sensitive("private_key", private);
                outputs
                    .values
                    .insert("public_key".to_owned(), json!(public));
            }
            Recipe::Operator { .. } | Recipe::File { .. } => {
                let value = self
                    .stored(ctx, recipe)
                    .await?
                    .ok_or_else(|| ProviderError::permanent(self.missing(ctx, recipe)))?;
                sensitive("value", value);
            }
        }
        outputs.values.insert("parameters".to_owned(), parameters);
        Ok(outputs)
    }

    /// The value of a stored secret (an operator's, or the hosting provider's file), `None`
    /// when it is not stored or the recipe generates its secret.
    async fn stored(
        &self,
        ctx: &CallContext,
        recipe: &Recipe,
    ) -> ProviderResult<Option<SecretString>> {
        match recipe {
            Recipe::Operator { name } => self.operator_secrets.get(&ctx.operator, name).await,
            Recipe::File { path } => read_secret_file(path, "hosting provider's secret file").await,
            _ => Ok(None),
        }
    }

    /// Why a stored secret is missing, and what to do about it.
    fn missing(&self, ctx: &CallContext, recipe: &Recipe) -> String {
        match recipe {
            Recipe::Operator { name } => format!(
                "operator secret `{name}` of operator `{}` is not stored: {}",
                ctx.operator,
                self.operator_secrets.how_to_store(&ctx.operator, name)
            ),
            Recipe::File { path } => format!(
                "{}: the hosting provider's secret file {} does not exist: create it (one \
                 line, mode 0600) or fix the path in infra.toml",
                ctx.address,
                path.display()
            ),
            _ => format!("{}: internal error: not a stored secret", ctx.address),
        }
    }
}

/// Whether `recorded` holds a secret made from `parameters`. Records without `parameters`
/// (none made by this provider should lack them) are judged by whether the value fits.
fn still_fits(recipe: &Recipe, parameters: &Value, recorded: &Outputs) -> bool {
    let value = recorded.values.get("value").and_then(Value::as_str);
    let has_outputs = match recipe {
        Recipe::VapidKeypair => {
            recorded.values.contains_key("private_key")
                && recorded.values.contains_key("public_key")
        }
        _ => value.is_some(),
    };
    if !has_outputs {
        return false;
    }
    if let Some(recorded_parameters) = recorded.values.get("parameters") {
        return recorded_parameters == parameters;
    }
    match (recipe, value) {
        (Recipe::Password { length, alphabet }, Some(v)) => {
            v.len() == *length && v.bytes().all(|b| alphabet.contains(&b))
        }
        (Recipe::Hex { length }, Some(v)) => {
            v.len() == *length && v.bytes().all(|b| b.is_ascii_hexdigit())
        }
        (Recipe::Base64 { bytes }, Some(v)) => STANDARD.decode(v).is_ok_and(|d| d.len() == *bytes),
        (Recipe::VapidKeypair, _) => true,
        _ => false,
    }
}

#[async_trait]
impl Provider for SecretProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn concurrency(&self) -> usize {
        16
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let (recipe, parameters) = Recipe::parse(ctx, inputs)?;
        self.make(ctx, &recipe, parameters).await
    }

    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let (recipe, parameters) = Recipe::parse(ctx, inputs)?;
        if matches!(recipe, Recipe::Operator { .. } | Recipe::File { .. }) {
            // The stored secret is the truth: a changed one shows as changed outputs, a removed
            // one as a missing resource (whose creation then says how to store it).
            return Ok(match self.stored(ctx, &recipe).await? {
                Some(value) => {
                    let mut outputs = Outputs::default();
                    outputs
                        .values
                        .insert("value".to_owned(), json!(value.into_exposed()));
                    outputs.sensitive.insert("value".to_owned());
                    outputs.values.insert("parameters".to_owned(), parameters);
                    Some(Observed {
                        inputs: json!({}),
                        outputs,
                    })
                }
                None => None,
            });
        }
        // A generated value lives only in the platform's state: without a record, it is lost
        // (a run crashed before recording it), and the resource is made anew.
        Ok(recorded.map(|outputs| Observed {
            inputs: json!({}),
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        let (recipe, parameters) = Recipe::parse(ctx, inputs)?;
        let stored = matches!(recipe, Recipe::Operator { .. } | Recipe::File { .. });
        if !stored && still_fits(&recipe, &parameters, recorded) {
            let mut kept = recorded.clone();
            kept.values.insert("parameters".to_owned(), parameters);
            return Ok(kept);
        }
        self.make(ctx, &recipe, parameters).await
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        // A service's keys are kept with its data (a kept database is unreadable without
        // them), to be used again when it comes back.
        Ok(crate::kept_in_state::deletion(
            &ctx.address,
            "secret",
            retention,
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use fediversity_engine::events::{Discard, ProgressReporter};
    use fediversity_model::graph::ResourceAddress;

    use super::*;

    pub fn ctx(address: &str) -> CallContext {
        let address: ResourceAddress = address.parse().unwrap();
        CallContext {
            operator: OperatorId::try_from("example-org").unwrap(),
            progress: ProgressReporter::new(Arc::new(Discard), address.clone()),
            address,
            idempotency_key: "test".to_owned(),
        }
    }

    fn provider(root: &std::path::Path) -> SecretProvider {
        SecretProvider::new(Arc::new(DirectoryOperatorSecrets::new(root)))
    }

    fn value(outputs: &Outputs, name: &str) -> String {
        outputs.values[name].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn passwords_hex_and_base64_have_their_length_and_alphabet() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        for length in [1, 32, 48, 200] {
            let out = p
                .create(
                    &ctx("secret.a"),
                    &json!({"generate": "password", "length": length}),
                )
                .await
                .unwrap();
            let v = value(&out, "value");
            assert_eq!(v.len(), length);
            assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
            assert!(out.sensitive.contains("value"));
        }
        for length in [1, 63, 128] {
            let out = p
                .create(
                    &ctx("secret.a"),
                    &json!({"generate": "hex", "length": length}),
                )
                .await
                .unwrap();
            let v = value(&out, "value");
            assert_eq!(v.len(), length);
            assert!(
                v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{v}"
            );
        }
        let out = p
            .create(
                &ctx("secret.a"),
                &json!({"generate": "base64", "bytes": 32}),
            )
            .await
            .unwrap();
        assert_eq!(STANDARD.decode(value(&out, "value")).unwrap().len(), 32);
    }

    #[test]
    fn passwords_use_the_whole_alphabet() {
        let seen: BTreeSet<char> = random_password(4000, ALPHANUMERIC)
            .unwrap()
            .chars()
            .collect();
        assert_eq!(seen.len(), 62);
    }

    #[tokio::test]
    async fn a_password_may_name_its_alphabet_and_is_drawn_evenly_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        // 5 characters: 256 is no multiple of 5, so the rejection of byte 255 is exercised.
        let inputs = json!({"generate": "password", "length": 4000, "alphabet": "abcd!"});
        let out = p.create(&ctx("secret.a"), &inputs).await.unwrap();
        let v = value(&out, "value");
        let counts = ['a', 'b', 'c', 'd', '!'].map(|c| v.chars().filter(|&x| x == c).count());
        assert_eq!(
            counts.iter().sum::<usize>(),
            4000,
            "only the alphabet: {counts:?}"
        );
        // 800 expected each; 5 standard deviations is ±127.
        assert!(
            counts.iter().all(|&n| (673..=927).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(out.values["parameters"]["alphabet"], "abcd!");
        let unchanged = p.update(&ctx("secret.a"), &inputs, &out).await.unwrap();
        assert_eq!(value(&unchanged, "value"), v, "generated once");

        let plain = json!({"generate": "password", "length": 8});
        let out = p.create(&ctx("secret.b"), &plain).await.unwrap();
        assert!(
            out.values["parameters"].get("alphabet").is_none(),
            "earlier records still match"
        );
        for (alphabet, why) in [
            ("a", "at least 2"),
            ("aab", "each once"),
            ("ab c", "printable"),
        ] {
            let bad = json!({"generate": "password", "length": 8, "alphabet": alphabet});
            let error = p.create(&ctx("secret.c"), &bad).await.unwrap_err();
            assert!(error.message.contains(why), "{alphabet}: {error:?}");
        }
        let error = p
            .create(
                &ctx("secret.c"),
                &json!({"generate": "hex", "length": 8, "alphabet": "ab"}),
            )
            .await
            .unwrap_err();
        assert!(error.message.contains("does not apply"), "{error:?}");
    }

    #[tokio::test]
    async fn every_secret_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let out = p
                .create(
                    &ctx("secret.a"),
                    &json!({"generate": "password", "length": 16}),
                )
                .await
                .unwrap();
            assert!(seen.insert(value(&out, "value")));
        }
    }

    #[tokio::test]
    async fn vapid_keys_are_a_matching_p256_pair_in_mastodons_format() {
        let dir = tempfile::tempdir().unwrap();
        let out = provider(dir.path())
            .create(&ctx("secret.vapid"), &json!({"generate": "vapid-keypair"}))
            .await
            .unwrap();
        assert!(out.sensitive.contains("private_key"));
        assert!(!out.sensitive.contains("public_key"));
        let private = URL_SAFE.decode(value(&out, "private_key")).unwrap();
        let public = URL_SAFE.decode(value(&out, "public_key")).unwrap();
        assert_eq!(private.len(), 32);
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 4, "an uncompressed point");
        let key = p256::SecretKey::from_slice(&private).unwrap();
        assert_eq!(
            key.public_key().to_encoded_point(false).as_bytes(),
            public.as_slice()
        );
    }

    #[tokio::test]
    async fn read_hands_back_the_record_and_update_keeps_it_unless_the_recipe_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let c = ctx("secret.a");
        let inputs = json!({"generate": "password", "length": 32});
        let made = p.create(&c, &inputs).await.unwrap();
        let read = p.read(&c, &inputs, Some(&made)).await.unwrap().unwrap();
        assert_eq!(read.outputs, made);
        assert!(p.read(&c, &inputs, None).await.unwrap().is_none());
        assert_eq!(p.update(&c, &inputs, &made).await.unwrap(), made);
        let longer = p
            .update(&c, &json!({"generate": "password", "length": 40}), &made)
            .await
            .unwrap();
        assert_eq!(value(&longer, "value").len(), 40);
        let rotated = p
            .update(
                &c,
                &json!({"generate": "password", "length": 32, "rotation": 2}),
                &made,
            )
            .await
            .unwrap();
        assert_ne!(value(&rotated, "value"), value(&made, "value"));
        // A record from before `parameters` existed is kept when its value fits.
        let mut old = made.clone();
        old.values.remove("parameters");
        assert_eq!(
            value(&p.update(&c, &inputs, &old).await.unwrap(), "value"),
            value(&made, "value")
        );
    }

    #[tokio::test]
    async fn a_kept_secret_is_kept_and_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let c = ctx("secret.mastodon-secret-key-base");
        let inputs = json!({"generate": "hex", "length": 128});
        let made = p.create(&c, &inputs).await.unwrap();
        let kept = p.delete(&c, &inputs, &made, Retention::Keep).await.unwrap();
        assert!(
            matches!(kept, Deletion::Kept { ref note } if note.contains("is kept")),
            "{kept:?}"
        );
        // Turned on again, the engine updates the retained record: the value stays.
        assert_eq!(p.update(&c, &inputs, &made).await.unwrap(), made);
        assert_eq!(
            p.delete(&c, &inputs, &made, Retention::Delete)
                .await
                .unwrap(),
            Deletion::Removed
        );
    }

    #[tokio::test]
    async fn operator_secrets_are_read_and_a_missing_one_says_how_to_store_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let c = ctx("secret.ldap");
        let inputs = json!({"operator_secret": "ldap-bind"});
        let error = p.create(&c, &inputs).await.unwrap_err();
        assert_eq!(
            error.kind,
            fediversity_engine::provider::ErrorKind::Permanent
        );
        assert!(
            error.message.contains("operator-secrets/ldap-bind"),
            "{}",
            error.message
        );
        assert!(p.read(&c, &inputs, None).await.unwrap().is_none());
        let path = dir.path().join("example-org/operator-secrets/ldap-bind");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "correct horse\n").unwrap();
        let out = p.create(&c, &inputs).await.unwrap();
        assert_eq!(value(&out, "value"), "correct horse");
        assert!(out.sensitive.contains("value"));
        std::fs::write(&path, "battery staple\n").unwrap();
        let read = p.read(&c, &inputs, Some(&out)).await.unwrap().unwrap();
        assert_eq!(value(&read.outputs, "value"), "battery staple");
    }

    #[tokio::test]
    async fn a_hosting_provider_file_is_read_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let c = ctx("secret.smtp-password");
        let path = dir.path().join("smtp-password");
        let inputs = json!({ "file": path });
        let error = p.create(&c, &inputs).await.unwrap_err();
        assert_eq!(
            error.kind,
            fediversity_engine::provider::ErrorKind::Permanent
        );
        assert!(
            error.message.contains(&path.display().to_string()),
            "{}",
            error.message
        );
        assert!(p.read(&c, &inputs, None).await.unwrap().is_none());
        std::fs::write(&path, "relay-password\n").unwrap();
        let out = p.create(&c, &inputs).await.unwrap();
        assert_eq!(value(&out, "value"), "relay-password");
        assert!(out.sensitive.contains("value"));
        // Changed by the hosting provider: read reports the new value, update takes it.
        std::fs::write(&path, "rotated-password\n").unwrap();
        let read = p.read(&c, &inputs, Some(&out)).await.unwrap().unwrap();
        assert_eq!(value(&read.outputs, "value"), "rotated-password");
        let updated = p.update(&c, &inputs, &out).await.unwrap();
        assert_eq!(value(&updated, "value"), "rotated-password");
    }

    #[tokio::test]
    async fn bad_inputs_are_refused_without_quoting_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let c = ctx("secret.a");
        for (inputs, expected) in [
            (json!({}), "give `generate`"),
            (json!({"generate": "password"}), "`length` is required"),
            (json!({"generate": "password", "length": 0}), "from 1 to"),
            (
                json!({"generate": "hex", "bytes": 3, "length": 3}),
                "`bytes` does not apply",
            ),
            (
                json!({"generate": "emoji", "length": 3}),
                "use password, hex",
            ),
            (
                json!({"generate": "password", "length": 3, "operator_secret": "x"}),
                "not several",
            ),
            (
                json!({"operator_secret": "x", "file": "/etc/fediversity/smtp-password"}),
                "not several",
            ),
            (json!({"file": "relative/smtp-password"}), "absolute path"),
            (
                json!({"file": "/etc/x", "length": 3}),
                "`length` does not apply",
            ),
            (json!({"operator_secret": "../etc/passwd"}), "secret"),
            (
                json!({"generate": "password", "length": "hunter2"}),
                "wrong type",
            ),
        ] {
            let error = p.create(&c, &inputs).await.unwrap_err();
            assert!(
                error.message.contains(expected),
                "{inputs}: {}",
                error.message
            );
            assert!(!error.message.contains("hunter2"), "{}", error.message);
            assert_eq!(
                error.kind,
                fediversity_engine::provider::ErrorKind::Permanent
            );
        }
    }

    #[tokio::test]
    async fn nothing_that_holds_a_value_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = DirectoryOperatorSecrets::new(dir.path());
        let p = SecretProvider::new(Arc::new(secrets.clone()));
        let operator = OperatorId::try_from("example-org").unwrap();
        let name = SecretName::try_from("token").unwrap();
        let path = secrets.path(&operator, &name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "s3cr3t-value").unwrap();
        let got = secrets.get(&operator, &name).await.unwrap().unwrap();
        for shown in [
            format!("{got}"),
            format!("{got:?}"),
            format!("{p:?}"),
            format!("{secrets:?}"),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        let (private, _) = vapid_keypair().unwrap();
        assert_eq!(format!("{private:?} {private}"), "(secret) (secret)");
    }
}
