# The script of an admin unit, the same for every service that makes the operator's admin
# account itself: nothing once the stamp file exists; otherwise create the account unless the
# service's database already has it, set its password from the credential, and write the
# stamp. The stamp, not the database, decides "once", so a password the operator changes later
# is never overwritten; the database check makes a run that failed half-way safe to repeat.
#
# `create` and `setPassword` are shell commands; `existsQuery` is SQL answering 1 when the
# account exists. Pure: returns the script text.
{
  stamp,
  database,
  existsQuery,
  create,
  setPassword,
}:
let
  inherit (import ./spec.nix) shellQuote;
in
''
  stamp=${shellQuote stamp}
  [ -e "$stamp" ] && exit 0
  exists=$(psql -d ${shellQuote database} -tAc ${shellQuote existsQuery})
  if [ "$exists" != 1 ]; then
    ${create}
  fi
  ${setPassword}
  touch "$stamp"
''
