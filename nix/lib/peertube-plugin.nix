# The script of PeerTube's plugin unit: installs an auth plugin and writes its settings through
# PeerTube's REST API, signed in as `root`, since PeerTube keeps both in its database and has no
# setting for them. The secret settings and root's password are read from credential files at
# runtime: they reach curl on its standard input, the access token through a header file in the
# unit's private runtime directory, never in a process's arguments or the store.
#
# It does the work only when the settings changed: a stamp keeps the SHA-256 of the last settings
# written (a digest, not the values), so a root password the operator changed later matters only
# when the settings change again.
#
# It also moves `root` off the operator's e-mail address (to `rootEmail`): PeerTube made root
# with the instance's admin address, and it finds a plugin's user by address first, so the
# operator's own sign-in through the plugin would land on root, which no plugin owns, and be
# refused. Moved, the operator's sign-in makes its own account.
#
# plugin: { npmName; settings; secretSettings = { <setting> = <credential name>; }; }
# pingAttempts: how many times (5 s apart) to ask whether PeerTube is up before giving up.
# Pure: returns the script text.
{
  plugin,
  base,
  stamp,
  settingsFile,
  adminPasswordCredential,
  rootEmail,
  pingAttempts ? 120,
}:
let
  inherit (import ./spec.nix) shellQuote;
  names = builtins.attrNames plugin.secretSettings;
  # jq binds each secret file to $s0, $s1, … in the order of `names`.
  variable = i: "s${toString i}";
  indexed = builtins.genList (i: {
    var = variable i;
    name = builtins.elemAt names i;
  }) (builtins.length names);
  rawfiles = builtins.concatStringsSep " " (
    map (
      x: "--rawfile ${x.var} \"$CREDENTIALS_DIRECTORY\"/${shellQuote plugin.secretSettings.${x.name}}"
    ) indexed
  );
  merge = builtins.concatStringsSep ", " (
    map (x: "${builtins.toJSON x.name}: ($" + x.var + " | rtrimstr(\"\\n\"))") indexed
  );
  npm = shellQuote plugin.npmName;
in
''
  set -euo pipefail
  base=${shellQuote base}
  stamp=${shellQuote stamp}
  settings=$(jq -c ${rawfiles} ${shellQuote ". + {${merge}}"} ${shellQuote settingsFile})
  digest=$(printf '%s' "$settings" | sha256sum | cut -d' ' -f1)
  if [ -e "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    exit 0
  fi
  # PeerTube answers only once its database is migrated.
  for attempt in $(seq 1 ${toString pingAttempts}); do
    curl -sf "$base/api/v1/ping" >/dev/null && break
    [ "$attempt" = ${toString pingAttempts} ] || sleep 5
  done
  client=$(curl -sf "$base/api/v1/oauth-clients/local")
  token=$(jq -n --argjson client "$client" --rawfile password "$CREDENTIALS_DIRECTORY"/${shellQuote adminPasswordCredential} \
    '{client_id: $client.client_id, client_secret: $client.client_secret, grant_type: "password",
      username: "root", password: ($password | rtrimstr("\n"))}' |
    curl -sf -H 'Content-Type: application/json' --data-binary @- "$base/api/v1/users/token" |
    jq -r .access_token)
  header="$RUNTIME_DIRECTORY/authorization"
  printf 'Authorization: Bearer %s\n' "$token" >"$header"
  api() {
    curl -sf -H @"$header" -H 'Content-Type: application/json' "$@"
  }
  root=$(api "$base/api/v1/users/me")
  if [ "$(jq -r .email <<<"$root")" != ${shellQuote rootEmail} ]; then
    jq -n --arg email ${shellQuote rootEmail} '{email: $email, emailVerified: true}' |
      api -X PUT --data-binary @- "$base/api/v1/users/$(jq -r .id <<<"$root")" >/dev/null
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' -H @"$header" "$base/api/v1/plugins/"${npm})
  case "$status" in
    200) ;;
    404)
      jq -n --arg name ${npm} '{npmName: $name}' |
        api --data-binary @- "$base/api/v1/plugins/install" >/dev/null
      ;;
    *)
      echo "fediversity: PeerTube answered $status for the plugin ${plugin.npmName}" >&2
      exit 1
      ;;
  esac
  jq -c '{settings: .}' <<<"$settings" |
    api -X PUT --data-binary @- "$base/api/v1/plugins/"${npm}"/settings" >/dev/null
  rm -f "$header"
  printf '%s\n' "$digest" >"$stamp"
''
