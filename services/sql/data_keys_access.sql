-- Who may read the users' data keys (crypto-shredding): the consumers that must open the
-- personal fields of events. Run as a superuser after auth_db_access.sql and the roles exist:
--   psql -v db=auth_db -v readers=cqrs_projection,cqrs_notifier -f data_keys_access.sql
-- Each reader may connect to auth_db and SELECT public.data_keys, nothing else there. The
-- keys are wrapped: reading them also takes the master key, which only these processes hold.
\set ON_ERROR_STOP 1
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'db', r)
FROM unnest(string_to_array(:'readers', ',')) AS r
WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

\connect :"db"
\set ON_ERROR_STOP 1
BEGIN;
SELECT format('GRANT USAGE ON SCHEMA public TO %I', r)
FROM unnest(string_to_array(:'readers', ',')) AS r
WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', r)
FROM unnest(string_to_array(:'readers', ',')) AS r
WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('GRANT SELECT ON public.data_keys TO %I', r)
FROM unnest(string_to_array(:'readers', ',')) AS r
WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) AND to_regclass('public.data_keys') IS NOT NULL \gexec
COMMIT;
