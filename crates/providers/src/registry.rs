//! The providers a run uses, by name: what `fediversity apply` hands the engine.

use std::path::Path;
use std::sync::Arc;

use fediversity_engine::Providers;
use fediversity_model::Infra;

use crate::dns::{self, DnsProvider};
use crate::garage::{self, GarageProvider, GarageSetupError};
use crate::identity::{self, IdentityCheckProvider, IdentityOptions};
use crate::local::LocalProvider;
use crate::nixos::{self, NixosConfigError, NixosOptions, NixosProvider};
use crate::proxmox::{self, AddressPool, ProxmoxProvider};
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
    /// The `[nix]` section.
    #[error(transparent)]
    Nixos(#[from] NixosConfigError),
    /// A section whose provider reports setup problems in the crate's own error: `[dns]`,
    /// `[proxmox]`.
    #[error(transparent)]
    Provider(#[from] crate::Error),
}

/// The providers for `infra`: the sandbox's under `sandbox_root` (the sandbox also serves every
/// kind whose section `infra` leaves out), the checks of operators' own identity providers
/// (which reach the operators' servers, so need no section), plus one real provider per
/// section it has. VMs take
/// their addresses from `addresses`, which must be shared by every process deploying to the
/// same Proxmox VE cluster (the platform's store).
pub fn infra_providers(
    infra: &Infra,
    sandbox_root: &Path,
    addresses: Arc<dyn AddressPool>,
) -> Result<Providers, SetupError> {
    let mut providers = sandbox_providers(sandbox_root);
    let identity = IdentityCheckProvider::new(IdentityOptions::default());
    providers.insert(identity::NAME.to_owned(), Arc::new(identity));
    if let Some(section) = &infra.proxmox {
        let proxmox = ProxmoxProvider::from_infra(section, addresses)?;
        providers.insert(proxmox::NAME.to_owned(), Arc::new(proxmox));
    }
    if let Some(section) = &infra.garage {
        let garage = GarageProvider::from_infra(section)?;
        providers.insert(garage::NAME.to_owned(), Arc::new(garage));
    }
    if let Some(section) = &infra.dns {
        let dns = DnsProvider::from_infra(section)?;
        providers.insert(dns::NAME.to_owned(), Arc::new(dns));
    }
    if let Some(section) = &infra.nix {
        let nixos = NixosProvider::from_infra(section, NixosOptions::default())?;
        providers.insert(nixos::NAME.to_owned(), Arc::new(nixos));
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

    fn pool() -> Arc<dyn AddressPool> {
        Arc::new(crate::MemoryAddressPool::default())
    }

    #[test]
    fn the_sandbox_infrastructure_needs_only_the_sandbox_and_the_identity_checks() {
        let providers = infra_providers(&Infra::sandbox(), Path::new("/nonexistent"), pool());
        assert_eq!(
            providers.map(|p| p.into_keys().collect::<Vec<_>>()).ok(),
            Some(vec![
                "identity".to_owned(),
                "local".to_owned(),
                "secret".to_owned(),
                "sshkey".to_owned()
            ])
        );
    }

    /// Every section of the example infrastructure gives its provider once its credential
    /// files exist; before, the error names the missing file.
    #[test]
    fn each_section_adds_its_provider_and_a_missing_credential_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut infra = Infra::example().unwrap();
        let token = dir.path().join("proxmox-token");
        let admin = dir.path().join("garage-admin-token");
        let tsig = dir.path().join("tsig.key");
        let proxmox = infra.proxmox.as_mut().unwrap();
        proxmox.token_secret_file = token.clone();
        proxmox.ca_file = None;
        infra.garage.as_mut().unwrap().admin_token_file = Some(admin.clone());
        infra.dns.as_mut().unwrap().tsig_secret_file = tsig.clone();
        let contents = [
            (token, "a-token-secret\n"),
            (admin, "an-admin-token\n"),
            (tsig, "c2VjcmV0LXRzaWcta2V5LW9mLTMyLWJ5dGVzLWxvbmchIQ==\n"),
        ];
        for (file, content) in &contents {
            let error = infra_providers(&infra, dir.path(), pool())
                .unwrap_err()
                .to_string();
            assert!(error.contains(&file.display().to_string()), "{error}");
            std::fs::write(file, content).unwrap();
        }
        let providers = infra_providers(&infra, dir.path(), pool()).unwrap();
        assert_eq!(
            providers.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "dns", "garage", "identity", "local", "nixos", "proxmox", "secret", "sshkey"
            ]
        );
        for (name, provider) in &providers {
            assert_eq!(provider.name(), name);
        }
    }
}
