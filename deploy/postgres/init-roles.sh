#!/bin/sh
# Roles for Coffer, run once by the postgres image on an empty data directory
# (/docker-entrypoint-initdb.d; deploy/docker-compose.yml mounts it there).
#
#   coffer_owner   owns the database and its schema: `coffer-api migrate` logs in as it
#   coffer_app     NOLOGIN; the migrations grant it the application's privileges
#                  (crates/store/src/lib.rs, APP_ROLE_GRANTS)
#   coffer_api     LOGIN, member of coffer_app: the API (database.migrate = false)
#   coffer_worker  LOGIN, member of coffer_app: the worker
#
# Creating coffer_app here means the owner needs no CREATEROLE; the migration's own
# CREATE ROLE then finds it and goes on to the grants.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="$POSTGRES_DB" \
    -v owner_pw="$COFFER_DB_OWNER_PASSWORD" \
    -v api_pw="$COFFER_DB_API_PASSWORD" \
    -v worker_pw="$COFFER_DB_WORKER_PASSWORD" <<'SQL'
CREATE ROLE coffer_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE coffer_app NOLOGIN;
CREATE ROLE coffer_api LOGIN PASSWORD :'api_pw' IN ROLE coffer_app;
CREATE ROLE coffer_worker LOGIN PASSWORD :'worker_pw' IN ROLE coffer_app;
-- Postgres 15+: the public schema belongs to the database owner.
ALTER DATABASE :"db" OWNER TO coffer_owner;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO coffer_owner, coffer_app;
SQL
