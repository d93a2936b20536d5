#!/bin/sh
# Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
# one login role per service (no superuser, no CREATEDB, no CREATEROLE) and one database per
# service, owned by that role; other roles may not connect to it. The superuser
# ($POSTGRES_USER) is for administration only.
#
#   POSTGRES_ROLES="mlflow:MLFLOW_DB_PASSWORD prefect:PREFECT_DB_PASSWORD"   # role:VARIABLE holding its password
#   POSTGRES_DATABASES="mlflow:mlflow mlflow_auth:mlflow prefect:prefect"    # database[:owner role]
#
# A database without ":owner" belongs to $POSTGRES_USER. Safe to run again: existing roles get
# their password reset, existing databases their owner. psql reads each password from the
# environment (\getenv), so none is on a command line. To add a database to a running stack:
#   docker compose -f infra/docker-compose.yml exec postgres createdb -U "$POSTGRES_USER" -O OWNER NAME
set -eu

name_ok() {  # role and database names go into SQL as identifiers: plain names only
    case "$1" in
        "" | *[!a-z0-9_]* | [0-9]*) echo "init-databases: bad name '$1' (use a-z, 0-9, _)" >&2; exit 1 ;;
    esac
}

run_psql() {
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" "$@"
}

for spec in ${POSTGRES_ROLES:-}; do
    role="${spec%%:*}"
    var="${spec#*:}"
    name_ok "$role"
    case "$var" in "" | "$spec" | *[!A-Za-z0-9_]*) echo "init-databases: '$spec': expected role:PASSWORD_VARIABLE" >&2; exit 1 ;; esac
    if [ -z "$(printenv "$var" || true)" ]; then
        echo "init-databases: $var (the password of role $role) is empty; set it in infra/.env" >&2
        exit 1
    fi
    echo "init-databases: role $role"
    run_psql <<SQL
\getenv pw $var
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', '$role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') \gexec
ALTER ROLE "$role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'pw';
SQL
done

for spec in ${POSTGRES_DATABASES:-mlflow mlflow_auth prefect}; do
    db="${spec%%:*}"
    owner="${spec#*:}"
    if [ "$owner" = "$spec" ]; then owner="$POSTGRES_USER"; else name_ok "$owner"; fi
    name_ok "$db"
    echo "init-databases: database $db, owner $owner"
    run_psql <<SQL
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \gexec
ALTER DATABASE "$db" OWNER TO "$owner";
REVOKE ALL ON DATABASE "$db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "$db" TO "$owner";
SQL
done
