//! The providers a run uses, by name: what `fediversity apply` hands the engine.

use std::path::Path;
use std::sync::Arc;

use fediversity_engine::Providers;

use crate::local::LocalProvider;
use crate::secret::{DirectoryOperatorSecrets, SecretProvider};
use crate::sshkey::SshKeyProvider;

/// The sandbox's providers under `root`: `local` (VMs, DNS, buckets, keys and hosts as files),
/// `secret` (operator secrets from `<root>/<operator>/operator-secrets/`) and `sshkey`.
pub fn sandbox_providers(root: &Path) -> Providers {
    let mut providers = Providers::new();
    let local = LocalProvider::new(root);
    let secret = SecretProvider::new(Arc::new(DirectoryOperatorSecrets::new(root)));
    providers.insert(crate::local::NAME.to_owned(), Arc::new(local));
    providers.insert(crate::secret::NAME.to_owned(), Arc::new(secret));
    providers.insert(
        crate::sshkey::NAME.to_owned(),
        Arc::new(SshKeyProvider::new()),
    );
    providers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_has_every_provider_the_sandbox_graph_names() {
        let providers = sandbox_providers(Path::new("/nonexistent"));
        assert_eq!(
            providers.keys().map(String::as_str).collect::<Vec<_>>(),
            ["local", "secret", "sshkey"]
        );
        for (name, provider) in &providers {
            assert_eq!(provider.name(), name);
        }
    }
}
