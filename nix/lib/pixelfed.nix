# Pixelfed's `.env` settings for one host spec, the ones read from secret files at runtime, the
# admin account and what the health check looks at. Pure, like ./mastodon.nix.
spec:
let
  s = import ./spec.nix;
  media = spec.s3.buckets.media;
  mail = s.mail spec;
  id = import ./identity.nix spec;
  # nginx answers the health check with plain HTTP on this loopback port, so that it reaches
  # PHP without a certificate (which may not exist yet on a first deployment).
  healthPort = 8090;

  s3 = {
    PF_ENABLE_CLOUD = "true";
    FILESYSTEM_CLOUD = "s3";
    AWS_DEFAULT_REGION = spec.s3.region;
    AWS_BUCKET = media.name;
    AWS_ENDPOINT = spec.s3.endpoint;
    # Media links point at Garage's website endpoint, which serves the bucket publicly.
    AWS_URL = media.public_url;
    # Garage's S3 API answers on one host name; virtual-host style would need a wildcard.
    AWS_USE_PATH_STYLE_ENDPOINT = "true";
    AWS_ACCESS_KEY_ID = spec.s3.access_key_id;
  };

  smtp =
    if mail == null then
      # No relay given: mail goes to the log rather than failing each request that sends one.
      { MAIL_MAILER = "log"; }
    else
      {
        MAIL_MAILER = "smtp";
        MAIL_HOST = mail.host;
        MAIL_PORT = toString mail.port;
        MAIL_FROM_ADDRESS = mail.from;
        MAIL_FROM_NAME = "Pixelfed";
        MAIL_ENCRYPTION =
          {
            starttls = "tls";
            tls = "ssl";
            none = "null";
          }
          .${mail.tls};
      }
      // (if mail.username == null then { } else { MAIL_USERNAME = mail.username; });

  # OpenID Connect through Pixelfed's generic OAuth 2 client (config/remote-auth.php), which
  # takes the endpoints rather than discovering them: the host spec carries them (the panel's,
  # or the identity check's outputs for the operator's own provider). Pixelfed knows a member by
  # `sub` and names the account after `preferred_username`. Pixelfed has LDAP code too, but
  # without a user filter and flagged not ready upstream: the configurator gives it no LDAP
  # section, and such a spec is refused here.
  oidc =
    let
      o = id.oidc;
    in
    {
      PF_OIDC_ENABLED = "true";
      PF_OIDC_CLIENT_ID = o.client_id;
      PF_OIDC_SCOPES = "openid profile email";
      PF_OIDC_AUTHORIZE_URL = o.authorizationEndpoint;
      PF_OIDC_TOKEN_URL = o.tokenEndpoint;
      PF_OIDC_PROFILE_URL = o.userinfoEndpoint;
      PF_OIDC_USERNAME_FIELD = "preferred_username";
      PF_OIDC_FIELD_ID = "sub";
    };

  identityEnv =
    if id.kind == "oidc" then
      oidc
    else if id.kind == "ldap" then
      throw "fediversity host spec: Pixelfed cannot sign in against LDAP; give it OpenID Connect or no identity section"
    else
      { };
in
{
  service = "pixelfed";
  hostName = s.hostName spec;
  inherit (spec) fqdn;
  inherit healthPort;

  env = s3 // smtp // identityEnv;

  secretEnv = {
    # Laravel reads a base64 key only with this prefix; the platform stores the bare key.
    APP_KEY = {
      secret = "app-key";
      prefix = "base64:";
    };
    AWS_SECRET_ACCESS_KEY = s.fromSecret "s3-secret-access-key";
  }
  // s.withMailLogin spec { MAIL_PASSWORD = s.fromSecret "smtp-password"; }
  // (if id.kind == "oidc" then { PF_OIDC_CLIENT_SECRET = s.fromSecret id.oidc.clientSecret; } else { });

  secretFileOptions = { };

  # Pixelfed never links a signing-in member to an existing account: it creates one, and refuses
  # an e-mail that a local account already has. So with OpenID Connect the admin unit makes no
  # local account (its e-mail would lock the admin out); it makes the account that first signs
  # in with the admin's e-mail an administrator instead (`promoteOnSignIn`), which is also the
  # only role mapping Pixelfed allows (it reads no groups).
  admin =
    if id.kind == "oidc" then
      {
        inherit (spec.admin) email;
        username = s.adminUsername spec;
        passwordSecret = null;
        promoteOnSignIn = true;
      }
    else
      s.admin spec // { promoteOnSignIn = false; };

  health = {
    units = [
      "postgresql.service"
      "redis-pixelfed.service"
      "phpfpm-pixelfed.service"
      "pixelfed-horizon.service"
      "nginx.service"
      "fediversity-pixelfed-admin.service"
    ];
    http = [
      {
        name = "pixelfed";
        url = "http://127.0.0.1:${toString healthPort}/api/service/health-check";
        expect_status = [ 200 ];
      }
    ];
  };

  ports = s.webPorts;
}
