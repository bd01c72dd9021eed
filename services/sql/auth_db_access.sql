-- Roles and privileges of auth_db (the write side). Run as a superuser with psql, connected
-- to the maintenance database, before the migrations and again after them (idempotent):
--   psql -v db=auth_db -v owner=cqrs_auth -v relay=cqrs_relay -f auth_db_access.sql
-- owner: the write API and the migrations (owns the database and every object in it).
-- relay: reads the outbox, marks rows published, deletes published rows; nothing else.
\set ON_ERROR_STOP 1
-- Passwords come from the environment, never the command line (visible to every local user).
\getenv owner_password OWNER_PASSWORD
\getenv relay_password RELAY_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[:'owner', :'relay']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
ALTER ROLE :"relay" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'relay_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"owner";
-- Nobody else may connect (PUBLIC has CONNECT and TEMP by default).
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"relay";

\connect :"db"
\set ON_ERROR_STOP 1
-- One transaction: privileges are revoked and granted again at once, so a set-up that runs
-- while the system serves never leaves a process without what it needs, and a privilege
-- granted by hand (or by an older set-up) does not survive it.
BEGIN;
-- Everything the migrations made belongs to the owner, whoever ran them (an older set-up
-- had one role own both databases).
SELECT format('ALTER SCHEMA %I OWNER TO %I', nspname, :'owner') FROM pg_namespace
WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'public')
  AND nspowner <> :'owner'::regrole \gexec
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
  AND c.relowner <> :'owner'::regrole \gexec
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"relay";
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', nspname, :'relay') FROM pg_namespace
WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' \gexec
-- Once the migrations made the outbox: exactly what relay_outbox and purge_published run.
SELECT format('GRANT SELECT, DELETE ON public.outbox TO %I', :'relay')
WHERE to_regclass('public.outbox') IS NOT NULL \gexec
SELECT format('GRANT UPDATE (published_at) ON public.outbox TO %I', :'relay')
WHERE to_regclass('public.outbox') IS NOT NULL \gexec
COMMIT;
