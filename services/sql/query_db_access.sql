-- Roles and privileges of query_db (the read model). Run as a superuser with psql, connected
-- to the maintenance database, before the migrations and again after them (idempotent):
--   psql -v db=query_db -v owner=cqrs_projection -v reader=cqrs_reader -f query_db_access.sql
-- owner: the projection workers, the rebuild (it creates and renames schemas) and the
--        migrations: owns the database and every object in it.
-- reader: the read API; SELECT only, on every table the owner makes, now and later (the
--         rebuild's swapped-in schema included, through default privileges).
\set ON_ERROR_STOP 1
-- Passwords come from the environment, never the command line (visible to every local user).
\getenv owner_password OWNER_PASSWORD
\getenv reader_password READER_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[:'owner', :'reader']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
ALTER ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'reader_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"reader";

\connect :"db"
\set ON_ERROR_STOP 1
-- One transaction: revoked and granted again at once (see auth_db_access.sql).
BEGIN;
SELECT format('ALTER SCHEMA %I OWNER TO %I', nspname, :'owner') FROM pg_namespace
WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'public')
  AND nspowner <> :'owner'::regrole \gexec
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
  AND c.relowner <> :'owner'::regrole \gexec
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"reader";
-- Schemas and tables the owner creates later (a migration, the rebuild's read_model_next
-- that becomes read_model) are readable at once.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" REVOKE ALL ON TABLES FROM :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT ON TABLES TO :"reader";
-- And what exists already.
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', nspname, :'reader') FROM pg_namespace
WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', nspname, :'reader') FROM pg_namespace
WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'public') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', nspname, :'reader') FROM pg_namespace
WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' \gexec
COMMIT;
