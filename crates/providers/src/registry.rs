//! The providers a run uses, by name: what `fediversity apply` hands the engine.

use std::path::Path;
use std::sync::Arc;

use fediversity_engine::Providers;
use fediversity_model::Infra;

use crate::dns::{self, DnsProvider};
use crate::garage::{self, GarageProvider, GarageSetupError};
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

/// Why the providers an `infra.toml` names could not be set up: a credential file that cannot
/// be read, a section missing a field. Said before any deployment starts.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The `[garage]` section.
    #[error(transparent)]
    Garage(#[from] GarageSetupError),
    /// A section whose provider reports setup problems in the crate's own error: `[dns]`.
    #[error(transparent)]
    Provider(#[from] crate::Error),
}

/// The providers for `infra`: the sandbox's under `sandbox_root` (the sandbox also serves every
/// kind whose section `infra` leaves out), plus one real provider per section it has.
pub fn infra_providers(infra: &Infra, sandbox_root: &Path) -> Result<Providers, SetupError> {
    let mut providers = sandbox_providers(sandbox_root);
    if let Some(section) = &infra.garage {
        let garage = GarageProvider::from_infra(section)?;
        providers.insert(garage::NAME.to_owned(), Arc::new(garage));
    }
    if let Some(section) = &infra.dns {
        let dns = DnsProvider::from_infra(section)?;
        providers.insert(dns::NAME.to_owned(), Arc::new(dns));
    }
    Ok(providers)
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

    #[test]
    fn the_sandbox_infrastructure_needs_only_the_sandbox() {
        let providers = infra_providers(&Infra::sandbox(), Path::new("/nonexistent"));
        assert_eq!(
            providers.map(|p| p.into_keys().collect::<Vec<_>>()).ok(),
            Some(vec![
                "local".to_owned(),
                "secret".to_owned(),
                "sshkey".to_owned()
            ])
        );
    }

    #[test]
    fn a_garage_section_adds_garage_and_an_unreadable_token_is_named() {
        let mut infra = Infra::example().unwrap();
        infra.proxmox = None;
        infra.dns = None;
        infra.nix = None;
        let Some(garage) = infra.garage.as_mut() else {
            panic!("the example infrastructure has a [garage] section");
        };
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("garage-admin-token");
        garage.admin_token_file = Some(token.clone());
        let error = infra_providers(&infra, dir.path()).unwrap_err().to_string();
        assert!(error.contains(&token.display().to_string()), "{error}");
        std::fs::write(&token, "an-admin-token\n").unwrap();
        let providers = infra_providers(&infra, dir.path()).unwrap();
        assert!(providers.contains_key("garage"));
        assert_eq!(providers["garage"].name(), "garage");
    }
}
