# PeerTube's settings for one host spec (merged into services.peertube.settings), the
# environment read from secret files at runtime, the admin account and what the health check
# looks at. Pure, like ./mastodon.nix.
spec:
let
  s = import ./spec.nix;
  inherit (spec.s3.buckets) playlists videos;
  mail = s.mail spec;
  id = import ./identity.nix spec;
  listenPort = 9000;

  # Each kind of file has its own bucket, served publicly by Garage's website endpoint.
  bucket = b: {
    bucket_name = b.name;
    prefix = "";
    base_url = b.public_url;
  };

  # Sign-in through Framasoft's auth plugins, which keep their settings in PeerTube's database:
  # the plugin unit installs the plugin and writes these settings through the REST API, the
  # secret ones read from files at runtime. Both plugins create an account at a member's first
  # sign-in. The LDAP plugin gives no role (the user sync does, through PeerTube's users API).
  # The OpenID Connect plugin reads a role only from a claim of its own shape
  # (`{"tube": {"roles": ["Administrator#tube"]}}`, its `role-property` setting), which the
  # panel sends and a usual provider does not: with another issuer, members are plain users.
  oidcPlugin =
    let
      o = id.oidc;
    in
    {
      npmName = "peertube-plugin-auth-openid-connect";
      settings = {
        "auth-display-name" = "Single sign-on";
        "discover-url" = o.discoveryUrl;
        "client-id" = o.client_id;
        "username-property" = "preferred_username";
        "mail-property" = "email";
        "display-name-property" = "name";
      }
      # The panel gives its operator's members PeerTube's administrator role in the claim
      # shape the plugin reads (docs/panel-oidc.md); the plugin maps no groups, so another
      # issuer's admin group is not applied.
      // (
        if o.panel then
          {
            "scope" = "openid email profile groups";
            "role-property" = "peertube_role";
          }
        else
          { }
      );
      secretSettings."client-secret" = o.clientSecret;
    };

  ldapPlugin =
    let
      l = id.ldap;
    in
    if l.tls != "ldaps" then
      throw "fediversity host spec: PeerTube's LDAP plugin cannot use StartTLS (${l.url}); use ldaps://, or give PeerTube no identity section"
    else
      {
        npmName = "peertube-plugin-auth-ldap";
        settings = {
          inherit (l) url;
          "insecure-tls" = false;
          "bind-dn" = l.bind_dn;
          "search-base" = l.user_base;
          "search-filter" = "(&${l.userFilter}(|(mail={{username}})(uid={{username}})))";
          "mail-property" = "mail";
          "username-property" = "uid";
        };
        secretSettings."bind-credentials" = l.passwordSecret;
      };
in
{
  service = "peertube";
  hostName = s.hostName spec;
  inherit (spec) fqdn;
  inherit listenPort;

  settings = {
    admin.email = spec.admin.email;
    object_storage = {
      enabled = true;
      inherit (spec.s3) endpoint region;
      # Garage has no object ACLs: upload without any.
      upload_acl = {
        public = null;
        private = null;
      };
      proxy.proxify_private_files = false;
      streaming_playlists = bucket playlists;
      web_videos = bucket videos;
    };
  }
  // (
    if mail == null then
      { }
    else
      {
        smtp = {
          transport = "smtp";
          hostname = mail.host;
          inherit (mail) port username;
          tls = mail.tls == "tls";
          disable_starttls = mail.tls == "none";
          from_address = mail.from;
        };
      }
  );

  # PeerTube takes its S3 credentials from the AWS SDK's environment variables when its
  # settings name none, which keeps the secret key out of the settings file in the store.
  env = {
    AWS_ACCESS_KEY_ID = spec.s3.access_key_id;
  };

  secretEnv = {
    AWS_SECRET_ACCESS_KEY = s.fromSecret "s3-secret-access-key";
    # Read once, when PeerTube creates its database: the admin account is `root`.
    PT_INITIAL_ROOT_PASSWORD = s.fromSecret "admin-password";
  };

  # services.peertube options naming a file the peertube unit reads, as a credential.
  secretFileOptions = {
    secretsFile = "secret";
  }
  // s.withMailLogin spec { smtpPasswordFile = "smtp-password"; };

  # The auth plugin and its settings, or null without an identity section.
  plugin =
    if id.kind == "oidc" then
      oidcPlugin
    else if id.kind == "ldap" then
      ldapPlugin
    else
      null;

  admin = {
    # PeerTube always names its first administrator `root` (its installer hard-codes the name,
    # and no setting changes it).
    username = "root";
    inherit (spec.admin) email;
    passwordSecret = "admin-password";
  };

  health = {
    units = [
      "postgresql.service"
      "redis-peertube.service"
      "peertube.service"
      "nginx.service"
    ]
    ++ (if id.kind == null then [ ] else [ "fediversity-peertube-sso.service" ]);
    http = [
      {
        name = "peertube";
        url = "http://127.0.0.1:${toString listenPort}/api/v1/ping";
        expect_status = [ 200 ];
      }
    ];
  };

  ports = s.webPorts;
}
