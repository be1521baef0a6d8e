# PeerTube on a host whose spec names it: NixOS's services.peertube with local PostgreSQL and
# Redis, nginx with ACME, videos on Garage (../lib/peertube.nix holds the settings and the S3
# quirks). The admin account is PeerTube's own `root`, created with the admin-password secret
# when PeerTube first initialises its database (PT_INITIAL_ROOT_PASSWORD), and never again.
{
  config,
  lib,
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

    fediversity.secretConsumers = [ "peertube" ];
  };
}
