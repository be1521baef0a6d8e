# Reading and checking a host spec, the JSON document the configurator writes for each NixOS host
# (see docs/nix-modules.md, "The host spec"). Pure Nix: no nixpkgs, so the tests evaluate it with
# a plain `nix-instantiate --eval`.
let
  services = [
    "mastodon"
    "pixelfed"
    "peertube"
    "garage"
  ];

  fail = message: throw "fediversity host spec: ${message}";

  check =
    spec:
    if (spec.version or null) != 1 then
      fail "version ${builtins.toJSON (spec.version or null)} is not one these modules read (they read version 1)"
    else if !(builtins.elem (spec.service or null) services) then
      fail "service ${builtins.toJSON (spec.service or null)} is none of ${builtins.concatStringsSep ", " services}"
    else if !(spec ? fqdn) then
      fail "the ${spec.service} host has no fqdn"
    else
      spec;
in
rec {
  inherit services check;

  # The spec in `specFile`, checked. The file holds no secret: only the paths of secret files.
  read = specFile: check (builtins.fromJSON (builtins.readFile specFile));

  # The path of the secret file `name`. Every secret a module reads goes through here, so a
  # module can only read secrets the configurator uploads.
  secretPath =
    spec: name:
    spec.secret_files.${name}
      or (fail "the ${spec.service} host needs the secret file `${name}`, which its secret_files does not list");

  # `https://host/…` → `host`.
  urlHost =
    url:
    let
      m = builtins.match "[a-z]+://([^/:]+)(:[0-9]+)?(/.*)?" url;
    in
    if m == null then fail "`${url}` is not a URL" else builtins.head m;

  # `https://host:port/…` → the scheme.
  urlScheme =
    url:
    let
      m = builtins.match "([a-z]+)://.*" url;
    in
    if m == null then fail "`${url}` is not a URL" else builtins.head m;

  # `scheme://host:port` → the port, or `default` when the URL names none.
  urlPort =
    url: default:
    let
      m = builtins.match "[a-z]+://[^/:]+:([0-9]+)(/.*)?" url;
    in
    if m == null then default else builtins.fromJSON (builtins.head m);

  # A service host is named after its service; Garage nodes after their number.
  hostName = spec: if spec.service == "garage" then "s3-${toString spec.node}" else spec.service;

  # Whom Let's Encrypt writes to about expiring certificates: `acme_email` when the spec has
  # one, the operator's admin otherwise.
  acmeEmail =
    spec:
    spec.acme_email or spec.admin.email
      or (fail "the ${spec.service} host has neither acme_email nor admin.email");

  # A user name that is safe inside SQL and shell quotes; the configurator's own rules are
  # stricter, this only guards the admin units against a spec written by hand.
  adminUsername =
    spec:
    let
      name = spec.admin.username;
    in
    if builtins.match "[A-Za-z0-9_]+" name == null then
      fail "admin username `${name}` may only hold letters, digits and `_`"
    else
      name;

  # The `mail` section, or null: `{ host, port, from, username?, tls }` where `tls` is
  # `starttls` (default), `tls` (implicit TLS) or `none`. With a username, the password is the
  # secret file `smtp-password`.
  mail =
    spec:
    if spec ? mail then
      {
        inherit (spec.mail) host from;
        port = spec.mail.port or 587;
        username = spec.mail.username or null;
        tls = spec.mail.tls or "starttls";
      }
    else
      null;

  # `attrs` when the spec's mail relay takes a login (its password is the secret file
  # `smtp-password`), nothing otherwise.
  withMailLogin =
    spec: attrs:
    let
      m = mail spec;
    in
    if m != null && m.username != null then attrs else { };

  # The operator's admin account on a service that takes the spec's username.
  admin = spec: {
    username = adminUsername spec;
    inherit (spec.admin) email;
    passwordSecret = "admin-password";
  };

  # What a web service opens in the firewall: HTTP (ACME challenges, redirects) and HTTPS.
  webPorts = [
    80
    443
  ];

  # `s` as one shell word.
  shellQuote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # One environment variable whose value is read from a secret file at runtime.
  fromSecret = secret: {
    inherit secret;
    prefix = "";
  };
}
