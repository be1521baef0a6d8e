{
  description = "Fediversity: the NixOS modules of the hosts the platform deploys";

  # Lock this (`nix flake lock`) before the first deployment: the nixos provider builds from
  # whatever the lock file pins, and an unlocked input changes under the hosts' feet.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    {
      nixosModules = {
        default = ./modules;
        common = ./modules/common.nix;
        mastodon = ./modules/mastodon.nix;
        pixelfed = ./modules/pixelfed.nix;
        peertube = ./modules/peertube.nix;
        garage = ./modules/garage.nix;
        proxmox-guest = ./modules/proxmox-guest.nix;
      };

      # The pure mapping (./lib) and the system of one host:
      #   nix build --impure --expr '((builtins.getFlake "path:/var/lib/fediversity/nix")
      #     .lib.fediversitySystem { specFile = /path/to/spec.json; }).config.system.build.toplevel'
      lib = import ./lib // {
        fediversitySystem =
          {
            specFile,
            template ? ./modules/proxmox-guest.nix,
            extraModules ? [ ],
          }:
          import ./lib/system.nix {
            inherit
              nixpkgs
              specFile
              template
              extraModules
              ;
          };
      };
    };
}
