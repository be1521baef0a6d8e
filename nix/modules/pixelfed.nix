# Pixelfed on a host whose spec names it: NixOS's services.pixelfed with local PostgreSQL and
# Redis, nginx with ACME, media on Garage (../lib/pixelfed.nix holds the settings and the S3
# quirks), and the operator's admin account created once.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  fedi = import ../lib;
  inherit (config.fediversity) spec;
  m = fedi.services.pixelfed spec;
  cfg = config.services.pixelfed;
  # The same derivation the upstream module runs artisan from.
  app = cfg.package.override { inherit (cfg) dataDir runtimeDir; };
  php = config.services.phpfpm.pools.pixelfed.phpPackage;
  adminUnit = "fediversity-pixelfed-admin";
in
{
  config = lib.mkIf (spec.service == "pixelfed") {
    services.pixelfed = {
      enable = true;
      domain = spec.fqdn;
      database = {
        createLocally = true;
        type = "pgsql";
      };
      redis.createLocally = true;
      settings = m.env;
      # Appended to .env by the upstream setup unit, which loads it as a credential.
      secretFile = fedi.envFilePath "pixelfed";
      nginx = {
        enableACME = true;
        forceSSL = true;
      };
    };

    # Plain HTTP on loopback only, answering the health check alone (see ../lib/pixelfed.nix):
    # the route runs through Laravel like any request, without needing the certificate.
    services.nginx.virtualHosts."pixelfed-health" = {
      listen = [
        {
          addr = "127.0.0.1";
          port = m.healthPort;
        }
      ];
      http2 = false;
      root = "${app}/public";
      # Laravel routes by REQUEST_URI, which the rewrite leaves alone. fastcgi.conf is included
      # here because a location that sets FastCGI parameters inherits none from above.
      locations."= /api/service/health-check".extraConfig = ''
        rewrite ^ /index.php break;
        include ${config.services.nginx.package}/conf/fastcgi.conf;
        fastcgi_pass unix:${config.services.phpfpm.pools.pixelfed.socket};
      '';
      locations."/".return = "404";
    };

    # Kept active after it ran, so that restarting fediversity-secrets.service (after a secret
    # changed) runs it again: it is what copies the secrets into Pixelfed's cached `.env`.
    systemd.services.pixelfed-data-setup.serviceConfig.RemainAfterExit = true;

    fediversity.secretConsumers = [
      "pixelfed-data-setup"
      "phpfpm-pixelfed"
      "pixelfed-horizon"
      adminUnit
    ];

    # The operator's admin account. With local accounts (../lib/admin-once.nix), created once:
    # user:create takes a password only as an argument, so it gets a throwaway one; the real one
    # is hashed by PHP from the credential file and written through psql's standard input, so it
    # appears in no process's arguments. With OpenID Connect, no local account (Pixelfed would
    # refuse the admin's own sign-in for its e-mail): a trigger makes the account that first
    # signs in with the admin's e-mail an administrator (see ../lib/pixelfed.nix).
    systemd.services.${adminUnit} = {
      description = "Fediversity: the operator's Pixelfed admin account";
      wantedBy = [ "multi-user.target" ];
      requires = [ "pixelfed-data-setup.service" ];
      after = [ "pixelfed-data-setup.service" ];
      path = [
        php
        pkgs.coreutils
        config.services.postgresql.package
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = app;
      }
      // lib.optionalAttrs (m.admin.passwordSecret != null) {
        LoadCredential = "${m.admin.passwordSecret}:${fedi.spec.secretPath spec m.admin.passwordSecret}";
      };
      script =
        if m.admin.promoteOnSignIn then
          fedi.promoteOnSignIn {
            database = cfg.database.name;
            table = "users";
            inherit (m.admin) email;
            promote = "NEW.is_admin := true;";
          }
        else
          fedi.adminOnce {
            stamp = "${cfg.dataDir}/.fediversity-admin-created";
            database = cfg.database.name;
            existsQuery = "SELECT 1 FROM users WHERE username = '${m.admin.username}'";
            create = ''
              php artisan user:create --name=${m.admin.username} --username=${m.admin.username} \
                --email=${lib.escapeShellArg m.admin.email} --password="$(head -c 24 /dev/urandom | base64)" \
                --is_admin=true --confirm_email=1 >/dev/null
            '';
            setPassword = ''
              hash=$(php -r 'echo password_hash(rtrim(file_get_contents(getenv("CREDENTIALS_DIRECTORY") . "/${m.admin.passwordSecret}"), "\r\n"), PASSWORD_BCRYPT);')
              psql -v ON_ERROR_STOP=1 -d ${cfg.database.name} <<SQL
              UPDATE users SET password = '$hash' WHERE username = '${m.admin.username}';
              SQL
            '';
          };
    };
  };
}
