-- Roles and privileges of notify_db (what the notifier mailed). Run as a superuser with psql,
-- connected to the maintenance database, before the migrations and again after them (idempotent):
--   psql -v db=notify_db -v owner=cqrs_notifier -f notify_db_access.sql
-- owner: the notification workers and notify_db's migrations; owns the database and every
--        object in it, and may connect to no other database (auth_db and query_db revoke
--        CONNECT from PUBLIC). The table holds event ids, kinds and user ids: no address.
\set ON_ERROR_STOP 1
-- Passwords come from the environment, never the command line (visible to every local user).
\getenv owner_password OWNER_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
ALTER ROLE :"owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"owner";
-- Nobody else may connect (PUBLIC has CONNECT and TEMP by default).
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;

\connect :"db"
\set ON_ERROR_STOP 1
BEGIN;
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
  AND c.relowner <> :'owner'::regrole \gexec
REVOKE ALL ON SCHEMA public FROM PUBLIC;
-- PostgreSQL 15+ gives public's CREATE to the database owner only; older ones to PUBLIC, revoked above.
GRANT USAGE, CREATE ON SCHEMA public TO :"owner";
COMMIT;
