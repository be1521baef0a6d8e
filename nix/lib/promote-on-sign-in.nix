# The script of an admin unit for a service that only creates accounts itself, at a member's
# first single sign-on, and maps no group to a role (Pixelfed): a trigger makes the account
# created with the operator's admin e-mail an administrator as it is inserted. Installed in one
# transaction at every start, so it is always there and never doubled; an account that exists
# already is left as it is, so an administrator the operator demoted stays demoted.
#
# `table` is the accounts table, `email` the admin's e-mail (compared without case, passed as a
# psql variable and quoted by PostgreSQL, never spliced into SQL), `promote` the PL/pgSQL
# statement that makes NEW an administrator. Pure: returns the script text.
{
  database,
  table,
  email,
  promote,
}:
let
  inherit (import ./spec.nix) shellQuote;
in
''
  psql -v ON_ERROR_STOP=1 --single-transaction -d ${shellQuote database} \
    -v email=${shellQuote email} -v tbl=${shellQuote table} <<'SQL'
  SELECT format($f$
    CREATE OR REPLACE FUNCTION fediversity_promote_admin() RETURNS trigger LANGUAGE plpgsql AS $body$
    BEGIN
      IF lower(NEW.email) = lower(%L) THEN
        ${promote}
      END IF;
      RETURN NEW;
    END
    $body$
  $f$, :'email') \gexec
  DROP TRIGGER IF EXISTS fediversity_promote_admin ON :"tbl";
  CREATE TRIGGER fediversity_promote_admin BEFORE INSERT ON :"tbl"
    FOR EACH ROW EXECUTE FUNCTION fediversity_promote_admin();
  SQL
''
