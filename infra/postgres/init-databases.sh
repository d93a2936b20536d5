#!/bin/sh
# Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
# one database per service, all owned by $POSTGRES_USER. To add one to a running stack:
#   docker compose -f infra/docker-compose.yml exec postgres createdb -U "$POSTGRES_USER" NAME
set -eu
for db in ${POSTGRES_DATABASES:-mlflow mlflow_auth prefect}; do
    echo "init-databases: creating $db"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
        -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
done
