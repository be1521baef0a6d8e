# The VM side of a host: what the hosting provider's NixOS template looks like, kept in every
# deployed system so that switching to it keeps the VM bootable and reachable. A hosting
# provider with another template replaces this module (lib/system.nix's `template`).
{
  lib,
  modulesPath,
  ...
}:
{
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
  system.stateVersion = lib.mkDefault "25.11";

  boot.loader.grub.device = lib.mkDefault "/dev/sda";
  boot.growPartition = true;
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };

  services.qemuGuest.enable = true;

  # Proxmox hands the address and the deploy key to cloud-init; it keeps configuring the
  # network and root's authorized_keys after every switch.
  services.cloud-init = {
    enable = true;
    network.enable = true;
  };
  networking.useDHCP = lib.mkDefault false;
}
