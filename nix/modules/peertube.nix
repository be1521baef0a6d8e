# PeerTube on a host whose spec names it: NixOS's services.peertube with local PostgreSQL and
# Redis, nginx with ACME, videos on Garage (../lib/peertube.nix holds the settings and the S3
# quirks). The admin account is PeerTube's own `root`, created with the admin-password secret
# when PeerTube first initialises its database (PT_INITIAL_ROOT_PASSWORD), and never again.
# With an identity section, the plugin unit installs and configures the auth plugin.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  fedi = import ../lib;
  inherit (config.fediversity) spec;
  m = fedi.services.peertube spec;
  # The peertube unit reads these files itself: systemd hands them over as credentials because
  # the secrets directory is root's alone.
  credential = name: "/run/credentials/peertube.service/${name}";
  smtpPassword = m.secretFileOptions.smtpPasswordFile or null;
  pluginUnit = "fediversity-peertube-sso";
  pluginCredentials = builtins.attrValues m.plugin.secretSettings ++ [ m.admin.passwordSecret ];
in
{
  config = lib.mkIf (spec.service == "peertube") {
    services.peertube = {
      enable = true;
      localDomain = spec.fqdn;
      listenHttp = m.listenPort;
      listenWeb = 443;
      enableWebHttps = true;
      configureNginx = true;
      database.createLocally = true;
      redis.createLocally = true;
      secrets.secretsFile = credential m.secretFileOptions.secretsFile;
      smtp.passwordFile = if smtpPassword == null then null else credential smtpPassword;
      serviceEnvironmentFile = fedi.envFilePath "peertube";
      inherit (m) settings;
    };

    services.nginx.virtualHosts.${spec.fqdn} = {
      enableACME = true;
      forceSSL = true;
    };

    systemd.services.peertube = {
      environment = m.env;
      serviceConfig.LoadCredential = map (name: "${name}:${fedi.spec.secretPath spec name}") (
        builtins.attrValues m.secretFileOptions
      );
    };

    fediversity.secretConsumers = [ "peertube" ] ++ lib.optional (m.plugin != null) pluginUnit;

    # The auth plugin and its settings (../lib/peertube-plugin.nix), after PeerTube is up; again
    # whenever the settings change (a rotated client secret restarts it with the secrets unit).
    systemd.services.${pluginUnit} = lib.mkIf (m.plugin != null) {
      description = "Fediversity: PeerTube's sign-in plugin ${m.plugin.npmName}, installed and configured";
      wantedBy = [ "multi-user.target" ];
      requires = [ "peertube.service" ];
      after = [ "peertube.service" ];
      path = [
        pkgs.curl
        pkgs.jq
        pkgs.coreutils
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = config.services.peertube.user;
        Group = config.services.peertube.group;
        RuntimeDirectory = pluginUnit;
        RuntimeDirectoryMode = "0700";
        LoadCredential = map (name: "${name}:${fedi.spec.secretPath spec name}") pluginCredentials;
      };
      script = fedi.peertubePluginScript {
        inherit (m) plugin;
        base = "http://127.0.0.1:${toString m.listenPort}";
        # The peertube unit's state directory, which its user owns.
        stamp = "/var/lib/peertube/.fediversity-${m.plugin.npmName}.sha256";
        settingsFile = pkgs.writeText "${m.plugin.npmName}-settings.json" (builtins.toJSON m.plugin.settings);
        adminPasswordCredential = m.admin.passwordSecret;
        rootEmail = "root@${spec.fqdn}";
      };
    };
  };
}
