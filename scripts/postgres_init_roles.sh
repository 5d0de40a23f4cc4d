#!/bin/sh
# Run once by the postgres image on a new cluster (/docker-entrypoint-initdb.d): the
# service's three roles (missed_session/store/roles.py; docs/security.md) and the database
# owned by the schema owner. POSTGRES_USER stays the cluster's superuser and nothing of the
# service connects as it.
set -eu
: "${MSR_OWNER_PASSWORD:?set MSR_OWNER_PASSWORD}"
: "${MSR_SERVICE_PASSWORD:?set MSR_SERVICE_PASSWORD}"
: "${MSR_REVIEWER_PASSWORD:?set MSR_REVIEWER_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_password="$MSR_OWNER_PASSWORD" \
    -v service_password="$MSR_SERVICE_PASSWORD" \
    -v reviewer_password="$MSR_REVIEWER_PASSWORD" <<'SQL'
CREATE ROLE msr_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'owner_password';
CREATE ROLE msr_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'service_password';
CREATE ROLE msr_reviewer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'reviewer_password';
CREATE DATABASE missed_session OWNER msr_owner;
SQL
