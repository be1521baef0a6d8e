# Pixelfed's `.env` settings for one host spec, the ones read from secret files at runtime, the
# admin account and what the health check looks at. Pure, like ./mastodon.nix.
spec:
let
  s = import ./spec.nix;
  media = spec.s3.buckets.media;
  mail = s.mail spec;
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
in
{
  service = "pixelfed";
  hostName = s.hostName spec;
  inherit (spec) fqdn;
  inherit healthPort;

  env = s3 // smtp;

  secretEnv = {
    # Laravel reads a base64 key only with this prefix; the platform stores the bare key.
    APP_KEY = {
      secret = "app-key";
      prefix = "base64:";
    };
    AWS_SECRET_ACCESS_KEY = s.fromSecret "s3-secret-access-key";
  }
  // s.withMailLogin spec { MAIL_PASSWORD = s.fromSecret "smtp-password"; };

  secretFileOptions = { };

  admin = s.admin spec;

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
