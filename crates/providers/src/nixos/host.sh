# The host side of the `nixos` provider, sent over SSH with every call (nothing is installed on
# the host): `sh -c "<this script>" fediversity-host COMMAND ROOT ARGS…`. ROOT is empty on a
# real host; on a test host it is the directory standing for the host's file system.
#
# The system profile is kept as nix-env keeps it (system-<N>-link → store path, system →
# system-<N>-link), so NixOS's boot loader and `nixos-rebuild --rollback` see the same
# generations. Activation runs detached (setsid, no terminal, output to a log), so it finishes
# even when the SSH connection drops; its exit status lands atomically in <run>.status, which
# the provider polls. No secret value is ever an argument: values arrive on standard input.
# Each command does as much as it can in one SSH session: sessions are what a deployment costs.
set -eu
command=$1 root=$2
shift 2
profiles="$root/nix/var/nix/profiles"
state="$root/var/lib/fediversity/deploy"
secrets="$root/var/lib/fediversity/secrets"

# wait_for RUN SECONDS: waits up to SECONDS for the activation RUN to end, then prints
# "exit <status>" followed by the end of its log, "running", or "unknown" when RUN never
# started (its log does not exist).
wait_for() {
  ticks=$(($2 * 20))
  while [ ! -f "$state/$1.status" ] && [ "$ticks" -gt 0 ]; do
    sleep 0.05
    ticks=$((ticks - 1))
  done
  if [ -f "$state/$1.status" ]; then
    echo "exit $(cat "$state/$1.status")"
    tail -n 20 "$state/$1.log" 2>/dev/null || true
  elif [ -f "$state/$1.log" ]; then
    echo running
  else
    echo unknown
  fi
}

# current: prints the system profile's "<generation> <store path>", nothing on a host never
# deployed.
current() {
  link=$(readlink "$profiles/system" 2>/dev/null) || return 0
  generation=${link#system-}
  echo "${generation%-link} $(readlink "$profiles/$link")"
}

case $command in
current)
  current
  ;;
prepare)
  # prepare ROOT < secrets: writes the secrets (one "<name> <base64 value>" line each) into a
  # root-only directory, atomically, removes the files not named, prints "changed <n>" (files
  # written with a new value or removed) and then what `current` prints.
  mkdir -p "$secrets"
  chmod 700 "$secrets"
  umask 077
  keep=" "
  changed=0
  while read -r name value; do
    printf '%s' "$value" | base64 -d >"$secrets/.$name.tmp"
    if cmp -s "$secrets/.$name.tmp" "$secrets/$name"; then
      rm -f "$secrets/.$name.tmp"
    else
      mv -f "$secrets/.$name.tmp" "$secrets/$name"
      changed=$((changed + 1))
    fi
    keep="$keep$name "
  done
  for file in "$secrets"/*; do
    [ -e "$file" ] || continue
    case $keep in
    *" ${file##*/} "*) ;;
    *) rm -f "$file" && changed=$((changed + 1)) ;;
    esac
  done
  echo "changed $changed"
  current
  ;;
switch)
  # switch ROOT SYSTEM GENERATION|new RUN SECONDS: points the profile at the generation (a new
  # one for `new`), starts `switch-to-configuration switch` detached, prints the generation
  # and then what wait_for says after up to SECONDS.
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
  : >"$state/$run.log"
  setsid sh -c '"$1" switch >"$2.log" 2>&1; echo $? >"$2.status.tmp"; mv -f "$2.status.tmp" "$2.status"' \
    fediversity-activation "$activate" "$state/$run" </dev/null >/dev/null 2>&1 &
  echo "$generation"
  wait_for "$run" "$4"
  ;;
status)
  # status ROOT RUN SECONDS: what wait_for says after up to SECONDS.
  wait_for "$1" "$2"
  ;;
units)
  # units ROOT UNIT…: each unit's state, one a line; fails unless all are active.
  command -v systemctl >/dev/null || { echo "systemctl is missing: no systemd" >&2; exit 2; }
  systemctl is-active "$@"
  ;;
restart-secrets)
  # restart-secrets ROOT: restarts nix/'s secrets unit, whose dependants read the secrets, so
  # that rotated values are used; nothing on a host without systemd or without the unit.
  if command -v systemctl >/dev/null && systemctl cat fediversity-secrets.service >/dev/null 2>&1; then
    systemctl restart fediversity-secrets.service
  fi
  ;;
remove-secrets)
  rm -rf "$secrets"
  ;;
*)
  echo "unknown command $command" >&2
  exit 2
  ;;
esac
