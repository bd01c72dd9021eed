-- The role a streaming replica of query_db connects with (the Compose cluster profile). Run as
-- a superuser with psql (idempotent):  psql -v role=replicator -f replication_access.sql
-- It may replicate and nothing else: no database of the project grants it CONNECT.
\set ON_ERROR_STOP 1
\getenv replication_password REPLICATION_PASSWORD
SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'replication_password';
