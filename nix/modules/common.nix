# What every Fediversity host shares: it reads the host spec (fediversity.specFile), names the
# host, lets the deployer in over SSH with the spec's deploy_keys only, opens the firewall for
# the service, sets up ACME, keeps the secrets directory root's alone, writes the environment
# files made from secrets, and publishes /etc/fediversity/health.json for the nixos provider.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  fedi = import ../lib;
  cfg = config.fediversity;
  inherit (cfg) spec;
  m = fedi.forSpec spec;
  secretsUnit = "fediversity-secrets.service";
  # The directory the configurator's secret_files point into; the nixos provider uploads there.
  secretsDir = "/var/lib/fediversity/secrets";
in
{
  options.fediversity = {
    specFile = lib.mkOption {
      type = lib.types.path;
      description = ''
        The host spec the configurator wrote for this host (JSON). It names secret files but
        holds no secret, so it may enter the Nix store.
      '';
    };

    spec = lib.mkOption {
      type = lib.types.attrs;
      readOnly = true;
      default = fedi.spec.read cfg.specFile;
      defaultText = lib.literalExpression "builtins.fromJSON (builtins.readFile config.fediversity.specFile)";
      description = "The host spec, read from `specFile` and checked.";
    };

    secretConsumers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = ''
        Units (without `.service`) that read this host's secrets, from its environment file or
        as credentials. They start after the environment file is written and restart with
        ${secretsUnit}, which the nixos provider restarts after uploading a changed secret.
      '';
    };
  };

  config = {
    networking.hostName = m.hostName;

    services.openssh = {
      enable = true;
      openFirewall = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
      };
    };

    # The deployer's key(s) from the spec are root's only way in: not the home directory's
    # authorized_keys (cloud-init's first key), so that rotating the deployment key drops the
    # old one from the host once the nixos provider has proven the new one.
    users.users.root.openssh.authorizedKeys.keys = spec.deploy_keys or [ ];
    services.openssh.authorizedKeysInHomedir = !(spec ? deploy_keys);

    networking.firewall = {
      enable = true;
      allowedTCPPorts = m.ports;
    };

    # The nixos provider copies closures in and may build on the host.
    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];

    security.acme = lib.mkIf (spec.service != "garage") {
      acceptTerms = true;
      defaults.email = fedi.spec.acmeEmail spec;
    };

    systemd.tmpfiles.rules = [
      "d /var/lib/fediversity 0755 root root -"
      # The nixos provider keeps each set of uploaded secrets in secret-sets/<id> and makes
      # ${secretsDir} a symlink to the set in force, switched atomically (and back on a
      # rollback): tmpfiles must not make that path a directory.
      "d /var/lib/fediversity/secret-sets 0700 root root -"
      "z /var/lib/fediversity/secret-sets 0700 root root -"
    ];

    environment.etc."fediversity/health.json".text = builtins.toJSON (fedi.health spec);

    systemd.services = {
      fediversity-secrets = {
        description = "Fediversity: environment files from the uploaded secrets";
        wantedBy = [ "multi-user.target" ];
        after = [ "local-fs.target" ];
        unitConfig.RequiresMountsFor = [ secretsDir ];
        path = [ pkgs.coreutils ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = fedi.envFileScriptFor spec;
      };
    }
    // lib.genAttrs cfg.secretConsumers (_: {
      requires = [ secretsUnit ];
      after = [ secretsUnit ];
      partOf = [ secretsUnit ];
    });
  };
}
