# The pure half of the Fediversity NixOS modules: everything that turns a host spec into
# settings, written without nixpkgs so that `nix-instantiate --eval --strict --json` evaluates
# it anywhere (the test suite does, for every golden host spec). ../modules/ applies it.
let
  spec = import ./spec.nix;
  services = {
    mastodon = import ./mastodon.nix;
    pixelfed = import ./pixelfed.nix;
    peertube = import ./peertube.nix;
    garage = import ./garage.nix;
  };
  uniqueSorted = list: builtins.attrNames (builtins.listToAttrs (map (name: { inherit name; value = null; }) list));
in
rec {
  inherit spec services;

  envFileScript = import ./env-files.nix;
  adminOnce = import ./admin-once.nix;
  promoteOnSignIn = import ./promote-on-sign-in.nix;
  peertubePluginScript = import ./peertube-plugin.nix;

  # Where the environment files made from secrets live: tmpfs, root's alone, rewritten at boot.
  runtimeDir = "/run/fediversity";
  envFilePath = service: "${runtimeDir}/${service}.env";

  # The script that writes the host's environment file from its secret files.
  envFileScriptFor =
    hostSpec:
    let
      m = forSpec hostSpec;
    in
    envFileScript {
      dir = runtimeDir;
      envFiles.${m.service} = secretEnvPaths hostSpec m.secretEnv;
    };

  # The settings of the service `hostSpec` names.
  forSpec = hostSpec: services.${(spec.check hostSpec).service} hostSpec;

  # A mapping's secretEnv with each secret's path: what ./env-files.nix takes.
  secretEnvPaths =
    hostSpec: secretEnv:
    builtins.mapAttrs (_: v: v // { path = spec.secretPath hostSpec v.secret; }) secretEnv;

  # The names of every secret file the host's modules read, sorted. Evaluation fails, naming
  # the file, if the spec's secret_files does not list one (the modules read each through
  # spec.secretPath, which fails the same way).
  secretsRead =
    hostSpec:
    let
      m = forSpec hostSpec;
      listed = name: builtins.seq (spec.secretPath hostSpec name) name;
    in
    map listed (
      uniqueSorted (
        map (v: v.secret) (builtins.attrValues m.secretEnv)
        ++ builtins.attrValues m.secretFileOptions
        ++ (if m.admin == null || m.admin.passwordSecret == null then [ ] else [ m.admin.passwordSecret ])
        ++ (if (m.plugin or null) == null then [ ] else builtins.attrValues m.plugin.secretSettings)
        ++ (if (m.apiToken or null) == null then [ ] else [ m.apiToken.secret ])
      )
    );

  # /etc/fediversity/health.json: what the nixos provider checks after activation
  # (docs/nix-modules.md, "The health contract").
  health =
    hostSpec:
    let
      m = forSpec hostSpec;
    in
    {
      version = 1;
      inherit (m) service;
      inherit (m.health) units http;
    };

  # Everything above for one spec, as the tests compare it with their golden files.
  describe =
    hostSpec:
    let
      m = forSpec hostSpec;
    in
    {
      mapping = builtins.removeAttrs m [ "health" ];
      secrets_read = secretsRead hostSpec;
      health = health hostSpec;
    };
}
