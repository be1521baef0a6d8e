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
#
# What counts as deployed is the marker `deploy/deployed` ("<generation> <system> <secret
# set>"), written by `commit` only after the activation and the health check passed: a
# deployment interrupted anywhere before leaves the marker on the last good state, so the next
# run neither skips the host nor rolls back past it. `deploy/pending` ("<generation> <system>
# <run>") names the last activation started, so that a run after a crash can adopt it rather
# than activate twice.
#
# Secrets live in sets, `secret-sets/<id>/<name>` (directories 0700, files 0600); `secrets` is
# a symlink to the set in force, switched atomically (`mv -T`), so the paths the systems read
# (`/var/lib/fediversity/secrets/<name>`) never show a half-written set, and a rollback points
# the link back at the deployed set. `commit` removes every other set.
set -eu
command=$1 root=$2
shift 2
profiles="$root/nix/var/nix/profiles"
base="$root/var/lib/fediversity"
state="$base/deploy"
secrets="$base/secrets"
sets="$base/secret-sets"

# wait_for RUN SECONDS: waits up to SECONDS for the activation RUN to end, then prints
# "exit <status>" followed by the end of its log, "running", or "unknown" when RUN never
# started (its log does not exist). An activation whose process is gone without a status (the
# host rebooted, or it was killed) ends with status 255.
wait_for() {
  ticks=$(($2 * 20))
  while [ ! -f "$state/$1.status" ] && [ "$ticks" -gt 0 ]; do
    sleep 0.05
    ticks=$((ticks - 1))
  done
  if [ ! -f "$state/$1.status" ] && [ -f "$state/$1.pid" ] && ! kill -0 "$(cat "$state/$1.pid")" 2>/dev/null \
    && [ ! -f "$state/$1.status" ]; then
    echo 255 >"$state/$1.status"
    echo "the activation process ended without an exit status (killed, or the host restarted)" >>"$state/$1.log"
  fi
  if [ -f "$state/$1.status" ]; then
    echo "exit $(cat "$state/$1.status")"
    tail -n 20 "$state/$1.log" 2>/dev/null || true
  elif [ -f "$state/$1.log" ]; then
    echo running
  else
    echo unknown
  fi
}

# current: prints what the host runs and what it was last deployed with, one fact a line:
# "profile <generation> <store path>" (the system profile), "deployed <generation> <store
# path> <secret set>" (the marker), "pending <generation> <store path> <run>" (the last
# activation started) and "secrets <set>" (the set in force); a line is missing when there
# is no such thing.
current() {
  if link=$(readlink "$profiles/system" 2>/dev/null); then
    generation=${link#system-}
    echo "profile ${generation%-link} $(readlink "$profiles/$link")"
  fi
  [ ! -f "$state/deployed" ] || echo "deployed $(cat "$state/deployed")"
  [ ! -f "$state/pending" ] || echo "pending $(cat "$state/pending")"
  if set=$(readlink "$secrets" 2>/dev/null); then
    echo "secrets ${set##*/}"
  fi
}

# differ A B: how many secret files differ between set directories A and B (either may be
# missing): a name in one only, or another value.
differ() {
  a=${1:-/nonexistent} b=${2:-/nonexistent} count=0 seen=" "
  for file in "$a"/* "$b"/*; do
    [ -e "$file" ] || continue
    name=${file##*/}
    case $seen in *" $name "*) continue ;; esac
    seen="$seen$name "
    cmp -s "$a/$name" "$b/$name" || count=$((count + 1))
  done
  echo "$count"
}

# point_secrets SET: makes SET the secrets in force, atomically.
point_secrets() {
  ln -sfn "secret-sets/$1" "$base/.secrets.tmp"
  mv -fT "$base/.secrets.tmp" "$secrets"
}

# deployed_set: the secret set the marker names, empty when there is none.
deployed_set() {
  [ ! -f "$state/deployed" ] || sed -n 's/^[0-9]* [^ ]* \([^ ]*\)$/\1/p' "$state/deployed"
}

case $command in
current)
  current
  ;;
prepare)
  # prepare ROOT SET < secrets: puts the secrets (one "<name> <base64 value>" line each) in
  # force as set SET, unless the set in force holds exactly them; prints "changed <n>" (the
  # files that differ from the deployed set) and then what `current` prints.
  mkdir -p "$sets" "$state"
  chmod 700 "$sets" "$state"
  umask 077
  if [ -d "$secrets" ] && [ ! -L "$secrets" ]; then
    # A directory from before secret sets: it becomes the set in force.
    mv -T "$secrets" "$sets/initial"
    point_secrets initial
  fi
  before=$(readlink "$secrets" 2>/dev/null || true)
  before=${before:+$base/$before}
  incoming="$sets/.$1.tmp"
  rm -rf "$incoming"
  mkdir "$incoming"
  while read -r name value; do
    printf '%s' "$value" | base64 -d >"$incoming/$name"
  done
  if [ -n "$before" ] && [ -d "$before" ] && [ "$(differ "$incoming" "$before")" = 0 ]; then
    rm -rf "$incoming"
  else
    mv -T "$incoming" "$sets/$1"
    point_secrets "$1"
  fi
  reference=$(deployed_set)
  reference=${reference:+$sets/$reference}
  echo "changed $(differ "$base/$(readlink "$secrets")" "${reference:-$before}")"
  current
  ;;
switch)
  # switch ROOT SYSTEM GENERATION|new RUN SECONDS: points the profile at the generation (for
  # `new`, the newest one if it already holds SYSTEM, else a new one), records the activation
  # as pending, starts `switch-to-configuration switch` detached, prints the generation and
  # then what wait_for says after up to SECONDS.
  system=$1 generation=$2 run=$3
  activate="$root$system/bin/switch-to-configuration"
  [ -x "$activate" ] || { echo "$system has no bin/switch-to-configuration" >&2; exit 2; }
  mkdir -p "$profiles" "$state"
  chmod 700 "$state"
  if [ "$generation" = new ]; then
    last=$(ls "$profiles" | sed -n 's/^system-\([0-9][0-9]*\)-link$/\1/p' | sort -n | tail -n 1)
    if [ -n "$last" ] && [ "$(readlink "$profiles/system-$last-link")" = "$system" ]; then
      generation=$last
    else
      generation=$((${last:-0} + 1))
      ln -sfn "$system" "$profiles/system-$generation-link"
    fi
  fi
  echo "$generation $system $run" >"$state/.pending.tmp"
  mv -f "$state/.pending.tmp" "$state/pending"
  ln -sfn "system-$generation-link" "$profiles/.system.tmp"
  mv -fT "$profiles/.system.tmp" "$profiles/system"
  rm -f "$state/$run.status"
  : >"$state/$run.log"
  setsid sh -c 'echo $$ >"$2.pid"; "$1" switch >"$2.log" 2>&1; echo $? >"$2.status.tmp"; mv -f "$2.status.tmp" "$2.status"' \
    fediversity-activation "$activate" "$state/$run" </dev/null >/dev/null 2>&1 &
  echo "$generation"
  wait_for "$run" "$4"
  ;;
status)
  # status ROOT RUN SECONDS: what wait_for says after up to SECONDS.
  wait_for "$1" "$2"
  ;;
commit)
  # commit ROOT GENERATION SYSTEM: records GENERATION (SYSTEM) with the secrets in force as
  # deployed, then forgets the other secret sets and the ended activations' files.
  set=$(readlink "$secrets" 2>/dev/null || true)
  set=${set##*/}
  mkdir -p "$state"
  echo "$1 $2 ${set:--}" >"$state/.deployed.tmp"
  mv -f "$state/.deployed.tmp" "$state/deployed"
  rm -f "$state/pending" "$state"/*.status "$state"/*.log "$state"/*.pid
  for dir in "$sets"/* "$sets"/.*.tmp; do
    [ -e "$dir" ] && [ "${dir##*/}" != "$set" ] || continue
    rm -rf "$dir"
  done
  ;;
restore-secrets)
  # restore-secrets ROOT: puts the deployed set back in force; prints how many files that
  # changed (0 when there is no deployed set).
  set=$(deployed_set)
  if [ -n "$set" ] && [ -d "$sets/$set" ]; then
    now=$(readlink "$secrets" 2>/dev/null || true)
    changed=$(differ "$sets/$set" "${now:+$base/$now}")
    point_secrets "$set"
    echo "$changed"
  else
    echo 0
  fi
  ;;
contract)
  # contract ROOT SYSTEM: the system's health contract, nothing when it declares none.
  [ ! -f "$root$1/etc/fediversity/health.json" ] || cat "$root$1/etc/fediversity/health.json"
  ;;
realise)
  # realise ROOT DRV: builds DRV (copied here with its closure) in the host's store and
  # prints its output paths.
  if [ -n "$root" ]; then
    nix-store --store "local?root=$root" --realise "$1"
  else
    nix-store --realise "$1"
  fi
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
  rm -rf "$secrets" "$sets"
  ;;
*)
  echo "unknown command $command" >&2
  exit 2
  ;;
esac
