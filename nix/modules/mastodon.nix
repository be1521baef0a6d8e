# Mastodon on a host whose spec names it: NixOS's services.mastodon with local PostgreSQL and
# Redis, nginx with ACME, media on Garage (../lib/mastodon.nix holds the settings and the S3
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
  m = fedi.services.mastodon spec;
  cfg = config.services.mastodon;
  # The init unit reads the key files; systemd hands them over as credentials because the
  # secrets directory is root's alone.
  initUnit = "mastodon-init-dirs";
  credential = name: "/run/credentials/${initUnit}.service/${name}";
  loadCredential = name: "${name}:${fedi.spec.secretPath spec name}";
  adminUnit = "fediversity-mastodon-admin";
  tokenUnit = "fediversity-mastodon-api-token";
  # What a oneshot running Rails as Mastodon needs: the web unit's environment (RAILS_ENV, the
  # database, the S3 settings…), less its PATH, which NixOS derives from each unit's own `path`.
  railsEnvironment = builtins.removeAttrs config.systemd.services.mastodon-web.environment [ "PATH" ];
  railsServiceConfig = {
    Type = "oneshot";
    RemainAfterExit = true;
    User = cfg.user;
    Group = cfg.group;
    WorkingDirectory = cfg.package;
    EnvironmentFile = config.systemd.services.mastodon-web.serviceConfig.EnvironmentFile;
  };
in
{
  config = lib.mkIf (spec.service == "mastodon") {
    services.mastodon = {
      enable = true;
      localDomain = spec.fqdn;
      configureNginx = true;
      # TCP on loopback rather than a socket, so the health check can reach the web process.
      enableUnixSocket = false;
      inherit (m) webPort streamingProcesses;
      database.createLocally = true;
      redis.createLocally = true;
      smtp = {
        createLocally = false;
        fromAddress = m.env.SMTP_FROM_ADDRESS or "notifications@${spec.fqdn}";
      };
      extraConfig = m.env;
      extraEnvFiles = [ (fedi.envFilePath "mastodon") ];
      secretKeyBaseFile = credential m.secretFileOptions.secretKeyBaseFile;
      vapidPublicKeyFile = credential m.secretFileOptions.vapidPublicKeyFile;
      vapidPrivateKeyFile = credential m.secretFileOptions.vapidPrivateKeyFile;
      activeRecordEncryptionPrimaryKeyFile = credential m.secretFileOptions.activeRecordEncryptionPrimaryKeyFile;
      activeRecordEncryptionDeterministicKeyFile = credential m.secretFileOptions.activeRecordEncryptionDeterministicKeyFile;
      activeRecordEncryptionKeyDerivationSaltFile = credential m.secretFileOptions.activeRecordEncryptionKeyDerivationSaltFile;
    };

    services.nginx.virtualHosts.${spec.fqdn} = {
      enableACME = true;
      forceSSL = true;
    };

    systemd.services.${initUnit}.serviceConfig = {
      LoadCredential = map loadCredential (builtins.attrValues m.secretFileOptions);
      # Kept active after it ran, so that restarting fediversity-secrets.service (after a
      # secret changed) runs it again: it is what copies the keys into .secrets_env.
      RemainAfterExit = true;
    };

    fediversity.secretConsumers = [
      initUnit
      "mastodon-init-db"
      "mastodon-web"
      "mastodon-sidekiq-all"
      "mastodon-media-auto-remove"
      adminUnit
      tokenUnit
    ]
    ++ map (i: "mastodon-streaming-${toString i}") (lib.range 1 m.streamingProcesses);

    # Creates the admin account once (../lib/admin-once.nix): tootctl makes it (its generated
    # password is thrown away, never logged), then Rails sets the password from the
    # admin-password credential, read from a file so that it appears in no process's arguments.
    systemd.services.${adminUnit} = {
      description = "Fediversity: the operator's Mastodon admin account, created once";
      wantedBy = [ "mastodon.target" ];
      requires = [ "mastodon-init-db.service" ];
      after = [
        "mastodon-init-db.service"
        "${initUnit}.service"
      ];
      environment = railsEnvironment;
      path = [
        cfg.package
        config.services.postgresql.package
      ];
      serviceConfig = railsServiceConfig // {
        LoadCredential = loadCredential m.admin.passwordSecret;
      };
      script = fedi.adminOnce {
        stamp = "/var/lib/mastodon/.fediversity-admin-created";
        database = cfg.database.name;
        existsQuery = "SELECT 1 FROM accounts WHERE username = '${m.admin.username}' AND domain IS NULL";
        create = "tootctl accounts create ${m.admin.username} --email ${lib.escapeShellArg m.admin.email} --confirmed --role Owner >/dev/null";
        setPassword = ''
          ADMIN_USERNAME=${m.admin.username} rails runner '
            account = Account.find_local(ENV.fetch("ADMIN_USERNAME"))
            password = File.read(File.join(ENV.fetch("CREDENTIALS_DIRECTORY"), "${m.admin.passwordSecret}")).chomp
            account.user.update!(password: password, approved: true)
          '
        '';
      };
    };

    # The platform's admin API token (../lib/mastodon.nix `apiToken`, docs/identity.md), made
    # idempotently at every start, after the admin account exists: Rails finds or creates the
    # admin's Doorkeeper application "Fediversity" with exactly the token's scopes, makes the
    # admin-api-token credential an access token of the admin in it (unless it already is one),
    # and revokes the application's other tokens, so a rotated secret replaces the old token.
    # Mastodon keeps access tokens as they are (its Doorkeeper configuration sets no
    # hash_token_secrets), so the secret is the bearer token itself. Doorkeeper generates a token
    # on create, so the value is written after, without callbacks. The value is read from the
    # credential file: it appears in no process's arguments or environment.
    systemd.services.${tokenUnit} = {
      description = "Fediversity: the platform's Mastodon admin API token";
      wantedBy = [ "mastodon.target" ];
      requires = [ "${adminUnit}.service" ];
      after = [ "${adminUnit}.service" ];
      environment = railsEnvironment // {
        ADMIN_USERNAME = m.admin.username;
        TOKEN_APPLICATION = m.apiToken.application;
        TOKEN_SCOPES = m.apiToken.scopes;
        TOKEN_CREDENTIAL = m.apiToken.secret;
      };
      path = [ cfg.package ];
      serviceConfig = railsServiceConfig // {
        LoadCredential = loadCredential m.apiToken.secret;
      };
      script = ''
        rails runner '
          account = Account.find_local(ENV.fetch("ADMIN_USERNAME"))
          abort("fediversity: no local account #{ENV.fetch("ADMIN_USERNAME")}") if account.nil?
          user = account.user
          scopes = ENV.fetch("TOKEN_SCOPES")
          app = Doorkeeper::Application.find_or_initialize_by(name: ENV.fetch("TOKEN_APPLICATION"), owner: user)
          app.update!(scopes: scopes, redirect_uri: "urn:ietf:wg:oauth:2.0:oob")
          value = File.read(File.join(ENV.fetch("CREDENTIALS_DIRECTORY"), ENV.fetch("TOKEN_CREDENTIAL"))).chomp
          abort("fediversity: the admin API token credential is empty") if value.empty?
          Doorkeeper::AccessToken.where(application_id: app.id, revoked_at: nil).where.not(token: value).find_each(&:revoke)
          token = Doorkeeper::AccessToken.find_by(token: value)
          current = token && token.application_id == app.id && token.resource_owner_id == user.id &&
            token.scopes.to_s == scopes && !token.revoked? && token.expires_in.nil?
          unless current
            token&.destroy!
            token = Doorkeeper::AccessToken.create!(application: app, resource_owner_id: user.id, scopes: scopes, expires_in: nil)
            token.update_columns(token: value)
          end
        '
      '';
    };
  };
}
