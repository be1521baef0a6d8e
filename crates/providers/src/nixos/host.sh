# The host side of the `nixos` provider, sent over SSH with every call (nothing is installed on
# the host): `sh -c "<this script>" fediversity-host COMMAND ROOT ARGS…`. ROOT is empty on a
# real host; on a test host it is the directory standing for the host's file system.
#
# The system profile is kept as nix-env keeps it (system-<N>-link → store path, system →
# system-<N>-link), so NixOS's boot loader and `nixos-rebuild --rollback` see the same
# generations. Activation runs detached (setsid, no terminal, output to a log), so it finishes
# even when the SSH connection drops; its exit status lands atomically in <run>.status, which
# the provider polls. No secret value is ever an argument: values arrive on standard input.
set -eu
command=$1 root=$2
shift 2
profiles="$root/nix/var/nix/profiles"
state="$root/var/lib/fediversity/deploy"
secrets="$root/var/lib/fediversity/secrets"

case $command in
current)
  # "<generation> <store path>" of the system profile, or nothing on a host never deployed.
  link=$(readlink "$profiles/system" 2>/dev/null) || exit 0
  generation=${link#system-}
  echo "${generation%-link} $(readlink "$profiles/$link")"
  ;;
switch)
  # switch ROOT SYSTEM GENERATION|new RUN: points the profile at the generation (a new one for
  # `new`) and starts `switch-to-configuration switch` detached; prints the generation.
  system=$1 generation=$2 run=$3
  activate="$root$system/bin/switch-to-configuration"
  [ -x "$activate" ] || { echo "$system has no bin/switch-to-configuration" >&2; exit 2; }
  mkdir -p "$profiles" "$state"
  chmod 700 "$state"
  if [ "$generation" = new ]; then
    last=$(ls "$profiles" | sed -n 's/^system-\([0-9][0-9]*\)-link$/\1/p' | sort -n | tail -n 1)
    generation=$((${last:-0} + 1))
    ln -sfn "$system" "$profiles/system-$generation-link"
  fi
  ln -sfn "system-$generation-link" "$profiles/.system.tmp"
  mv -fT "$profiles/.system.tmp" "$profiles/system"
  rm -f "$state/$run.status"
  setsid sh -c '"$1" switch >"$2.log" 2>&1; echo $? >"$2.status.tmp"; mv -f "$2.status.tmp" "$2.status"' \
    fediversity-activation "$activate" "$state/$run" </dev/null >/dev/null 2>&1 &
  echo "$generation"
  ;;
status)
  # status ROOT RUN: "running", or the exit status followed by the end of the log.
  run=$1
  if [ -f "$state/$run.status" ]; then
    cat "$state/$run.status"
    tail -n 20 "$state/$run.log" 2>/dev/null || true
  else
    echo running
  fi
  ;;
health-checks)
  # health-checks ROOT SYSTEM: the system's declared health checks (none when it declares none).
  cat "$root$1/etc/fediversity/health.json" 2>/dev/null || echo '{"checks":[]}'
  ;;
secret)
  # secret ROOT NAME < value: written atomically, root-only.
  name=$1
  mkdir -p "$secrets"
  chmod 700 "$secrets"
  (umask 077 && cat >"$secrets/.$name.tmp")
  mv -f "$secrets/.$name.tmp" "$secrets/$name"
  ;;
keep-secrets)
  # keep-secrets ROOT NAME…: removes every secret file not named.
  [ -d "$secrets" ] || exit 0
  for file in "$secrets"/*; do
    [ -e "$file" ] || continue
    keep=
    for name in "$@"; do
      if [ "$name" = "${file##*/}" ]; then keep=1; fi
    done
    [ -n "$keep" ] || rm -f "$file"
  done
  ;;
remove-secrets)
  rm -rf "$secrets"
  ;;
*)
  echo "unknown command $command" >&2
  exit 2
  ;;
esac
