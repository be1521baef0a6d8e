# Mastodon's settings for one host spec: plain environment variables, the ones read from secret
# files at runtime, the secret files the NixOS module's own options point at, the admin account
# and what the health check looks at. Pure: `nix-instantiate --eval --strict --json` shows it.
spec:
let
  s = import ./spec.nix;
  media = spec.s3.buckets.media;
  webPort = 55001;
  mail = s.mail spec;
  id = import ./identity.nix spec;

  s3 = {
    S3_ENABLED = "true";
    S3_PROTOCOL = s.urlScheme spec.s3.endpoint;
    S3_ENDPOINT = spec.s3.endpoint;
    S3_REGION = spec.s3.region;
    S3_BUCKET = media.name;
    AWS_ACCESS_KEY_ID = spec.s3.access_key_id;
    # Garage serves public media through its website endpoint, one host name per bucket.
    S3_ALIAS_HOST = s.urlHost media.public_url;
    # Garage has no object ACLs and refuses uploads that set one: send none.
    S3_PERMISSION = "";
  };

  smtp =
    if mail == null then
      { }
    else
      {
        SMTP_SERVER = mail.host;
        SMTP_PORT = toString mail.port;
        SMTP_FROM_ADDRESS = mail.from;
        SMTP_ENABLE_STARTTLS = if mail.tls == "starttls" then "always" else "never";
        SMTP_TLS = if mail.tls == "tls" then "true" else "false";
      }
      // (
        if mail.username == null then
          { SMTP_AUTH_METHOD = "none"; }
        else
          {
            SMTP_LOGIN = mail.username;
            SMTP_AUTH_METHOD = "plain";
          }
      );

  # LDAP through Devise: Mastodon looks a signing-in member up by `uid` and makes the account
  # on first sign-in, or takes the local account of that user name, so the admin account the
  # admin unit made becomes the directory's account whose uid is the admin's user name.
  ldap =
    let
      l = id.ldap;
    in
    {
      LDAP_ENABLED = "true";
      LDAP_HOST = l.host;
      LDAP_PORT = toString l.port;
      LDAP_METHOD = if l.tls == "ldaps" then "simple_tls" else "start_tls";
      LDAP_BASE = l.user_base;
      LDAP_BIND_DN = l.bind_dn;
      LDAP_UID = "uid";
      LDAP_MAIL = "mail";
      # Directory uids may hold `.` and `-`, which Mastodon user names may not: it turns them
      # into `_`.
      LDAP_UID_CONVERSION_ENABLED = "true";
      LDAP_SEARCH_FILTER = "(&${l.userFilter}(|(%{uid}=%{email})(%{mail}=%{email})))";
    };

  # OpenID Connect through OmniAuth, with discovery from the issuer. The user name comes from
  # the uid field (Mastodon strips it to `[a-z0-9_]`, 30 characters). Sign-in is SSO only
  # (OMNIAUTH_ONLY) from the first start, so no local account but the admin's exists: that one,
  # made by the admin unit with the admin's e-mail, is re-attached at the first sign-in that
  # carries the same e-mail, verified by the provider (ALLOW_UNSAFE_AUTH_PROVIDER_REATTACH;
  # "unsafe" because any provider could then claim a local account, and here the only provider
  # is the one every account comes from). Mastodon maps no group to a role: the admin keeps the
  # Owner role the admin unit gave, other members are plain users.
  oidc =
    let
      o = id.oidc;
    in
    {
      OIDC_ENABLED = "true";
      OIDC_DISPLAY_NAME = "Single sign-on";
      OIDC_ISSUER = o.issuer;
      OIDC_DISCOVERY = "true";
      OIDC_SCOPE = "openid,profile,email";
      OIDC_UID_FIELD = "preferred_username";
      OIDC_CLIENT_ID = o.client_id;
      OIDC_REDIRECT_URI = "https://${spec.fqdn}/auth/auth/openid_connect/callback";
      # With the operator's own provider, only what it marks verified (`email_verified`)
      # counts: an e-mail a member typed there must not re-attach the admin's account. The
      # panel confirms no addresses, but admits to this service only the operator's own panel
      # members, who administer it anyway; so with the panel the e-mail is taken as verified.
      OIDC_SECURITY_ASSUME_EMAIL_IS_VERIFIED = if o.panel or false then "true" else "false";
      OMNIAUTH_ONLY = "true";
      ALLOW_UNSAFE_AUTH_PROVIDER_REATTACH = "true";
    };
in
{
  service = "mastodon";
  hostName = s.hostName spec;
  inherit (spec) fqdn;
  inherit webPort;
  streamingProcesses = 1;

  env =
    s3
    // smtp
    // (if id.kind == "ldap" then ldap else { })
    // (if id.kind == "oidc" then oidc else { });

  secretEnv = {
    AWS_SECRET_ACCESS_KEY = s.fromSecret "s3-secret-access-key";
  }
  // s.withMailLogin spec { SMTP_PASSWORD = s.fromSecret "smtp-password"; }
  // (if id.kind == "ldap" then { LDAP_PASSWORD = s.fromSecret id.ldap.passwordSecret; } else { })
  // (if id.kind == "oidc" then { OIDC_CLIENT_SECRET = s.fromSecret id.oidc.clientSecret; } else { });

  # services.mastodon.<option> = the secret file it names. The module's init unit reads them
  # (as credentials: the secrets directory is root's alone). `otp-secret` is not read: Mastodon
  # 4.4 dropped OTP_SECRET and NixOS removed its option.
  secretFileOptions = {
    secretKeyBaseFile = "secret-key-base";
    vapidPublicKeyFile = "vapid-public-key";
    vapidPrivateKeyFile = "vapid-private-key";
    activeRecordEncryptionPrimaryKeyFile = "ar-primary-key";
    activeRecordEncryptionDeterministicKeyFile = "ar-deterministic-key";
    activeRecordEncryptionKeyDerivationSaltFile = "ar-key-derivation-salt";
  };

  admin = s.admin spec;

  # The platform's admin API token, for the user sync (docs/identity.md): the token unit makes
  # the secret's value an access token of the admin account, in a Doorkeeper application of
  # this name limited to these scopes.
  apiToken = {
    secret = "admin-api-token";
    application = "Fediversity";
    scopes = "admin:read:accounts admin:write:accounts";
  };

  health = {
    units = [
      "postgresql.service"
      "redis-mastodon.service"
      "mastodon-web.service"
      "mastodon-sidekiq-all.service"
      "mastodon-streaming-1.service"
      "nginx.service"
      "fediversity-mastodon-admin.service"
      "fediversity-mastodon-api-token.service"
    ];
    http = [
      {
        name = "mastodon-web";
        url = "http://127.0.0.1:${toString webPort}/health";
        expect_status = [ 200 ];
      }
    ];
  };

  ports = s.webPorts;
}
