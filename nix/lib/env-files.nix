# The script that writes environment files from secret files, at runtime, as root: systemd's
# EnvironmentFile=, Laravel's `.env` and a shell's `source` all read `NAME='value'` lines, while
# the platform uploads each secret as a bare value. Values stay out of the Nix store: the
# script holds only paths.
#
# envFiles: { <file name> = { <VARIABLE> = { path; prefix; }; }; }, written to <dir>/<name>.env
# with mode 0600. A value holding a quote or a line break is refused (it could not be carried
# literally); neither the value nor any part of it is ever printed.
{ dir, envFiles }:
let
  quote = (import ./spec.nix).shellQuote;
  names = builtins.attrNames envFiles;
  line = vars: var: "put ${quote var} ${quote vars.${var}.path} ${quote vars.${var}.prefix} >>\"$tmp\"\n";
  writeFile =
    name:
    let
      vars = envFiles.${name};
      target = "${dir}/${name}.env";
    in
    ''
      tmp=$(mktemp ${quote "${dir}/.${name}.XXXXXX"})
      ${builtins.concatStringsSep "" (map (line vars) (builtins.attrNames vars))}mv -f "$tmp" ${quote target}
    '';
in
''
  set -euo pipefail
  umask 077
  put() {
    local value
    if ! value=$(cat -- "$2"); then
      echo "fediversity: cannot read the secret file $2 for $1" >&2
      return 1
    fi
    case "$value" in
      *"'"* | *$'\n'* | *$'\r'*)
        echo "fediversity: the secret file $2 for $1 holds a quote or a line break, which an environment file cannot carry" >&2
        return 1
        ;;
    esac
    printf "%s='%s%s'\n" "$1" "$3" "$value"
  }
  mkdir -p ${quote dir}
  tmp=
  # A refused or unreadable secret stops the script and leaves no half-written file behind.
  trap 'rm -f "$tmp"' EXIT
''
+ builtins.concatStringsSep "" (map writeFile names)
