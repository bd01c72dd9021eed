-- Who may read the users' data keys (crypto-shredding): the consumers that must open the
-- personal fields of events. Run as a superuser on auth_db's server, after auth_db_access.sql:
--   PROJECTION_PASSWORD=... NOTIFIER_PASSWORD=... \
--   psql -v db=auth_db -v projection=cqrs_projection -v notifier=cqrs_notifier -f data_keys_access.sql
-- Each may connect to auth_db and SELECT public.data_keys, nothing else there. The keys are
-- wrapped: opening them also takes the master key, which only these processes hold. The roles
-- are created here when auth_db has a server of its own (Compose), with the same passwords.
\set ON_ERROR_STOP 1
\getenv projection_password PROJECTION_PASSWORD
\getenv notifier_password NOTIFIER_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[:'projection', :'notifier']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"projection" WITH LOGIN PASSWORD :'projection_password';
ALTER ROLE :"notifier" WITH LOGIN PASSWORD :'notifier_password';
GRANT CONNECT ON DATABASE :"db" TO :"projection", :"notifier";

\connect :"db"
\set ON_ERROR_STOP 1
BEGIN;
GRANT USAGE ON SCHEMA public TO :"projection", :"notifier";
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', r) FROM unnest(ARRAY[:'projection', :'notifier']) AS r \gexec
SELECT format('GRANT SELECT ON public.data_keys TO %I, %I', :'projection', :'notifier')
WHERE to_regclass('public.data_keys') IS NOT NULL \gexec
COMMIT;
