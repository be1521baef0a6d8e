# The NixOS system of one host, from its spec file, without flakes:
#
#   nix-build nix/lib/system.nix --arg nixpkgs /path/to/nixpkgs \
#     --argstr specFile /path/to/spec.json -A config.system.build.toplevel
#
# `template` describes the VM (disks, boot loader, cloud-init); `extraModules` are the hosting
# provider's own additions (monitoring, backups).
{
  nixpkgs,
  specFile,
  template ? ../modules/proxmox-guest.nix,
  extraModules ? [ ],
}:
import "${nixpkgs}/nixos/lib/eval-config.nix" {
  # The platform comes from the template's nixpkgs.hostPlatform.
  system = null;
  modules = [
    ../modules
    template
    { fediversity.specFile = specFile; }
  ]
  ++ extraModules;
}
