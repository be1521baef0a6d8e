# The `identity` section of a host spec, read the same way for every service: the operator's
# LDAP directory, or an OpenID Connect provider (the operator's own, or the panel). Each
# service's mapping turns it into its own settings (./mastodon.nix, ./pixelfed.nix,
# ./peertube.nix). Pure, like ./spec.nix.
spec:
let
  s = import ./spec.nix;
  section = spec.identity or { };
  fail = message: throw "fediversity host spec: ${message}";

  ldap =
    let
      l = section.ldap;
      scheme = s.urlScheme l.url;
      tls =
        if scheme == "ldaps" then
          "ldaps"
        else if l.start_tls or false then
          "start_tls"
        else
          fail "LDAP at ${l.url} needs ldaps:// or start_tls; the bind password never crosses the network in clear";
    in
    {
      inherit (l) url bind_dn user_base;
      inherit tls;
      host = s.urlHost l.url;
      port = s.urlPort l.url (if scheme == "ldaps" then 636 else 389);
      userFilter = l.user_filter or "(objectClass=inetOrgPerson)";
      adminGroup = l.admin_group or null;
      # Read from this secret file at runtime, never written into the store.
      passwordSecret = "identity-bind-password";
    };

  oidc =
    let
      o = section.oidc;
      endpoint =
        name:
        o.${name}
          or (fail "the ${spec.service} host's OpenID Connect provider has no ${name}: the identity check's outputs are missing from the spec");
    in
    {
      inherit (o) issuer client_id;
      groupsClaim = o.groups_claim or "groups";
      adminGroup = o.admin_group or null;
      # The panel as provider (contract A) rather than the operator's own.
      panel = o.panel or false;
      discoveryUrl = "${o.issuer}/.well-known/openid-configuration";
      authorizationEndpoint = endpoint "authorization_endpoint";
      tokenEndpoint = endpoint "token_endpoint";
      userinfoEndpoint = endpoint "userinfo_endpoint";
      clientSecret = "identity-client-secret";
    };
in
{
  # `ldap`, `oidc` or null (local accounts only).
  kind =
    if section ? ldap then
      "ldap"
    else if section ? oidc then
      "oidc"
    else
      null;
  inherit ldap oidc;
}
