#!/bin/sh
# Create the deployment's secret files under ./secrets/ (never committed; .gitignore and
# .dockerignore exclude it). The directory is the owner's alone (0700); the files inside are
# 0644 because compose bind-mounts each file as it is, and the containers run as their own
# non-root users, who must read them (no host user but the owner can reach them through
# the directory). Run once per deployment from
# the repository root; an existing file is never overwritten (rotate keys as
# docs/deployment.md says, not by re-running this).
#
#   sh deploy/make-secrets.sh
set -eu
mkdir -p secrets
chmod 0700 secrets
umask 022
random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
write() {  # write NAME VALUE: only when absent
  if [ -e "secrets/$1" ]; then echo "secrets/$1 exists, kept"; return; fi
  printf '%s' "$2" > "secrets/$1"
  echo "secrets/$1 written"
}
if [ -e secrets/audit_db_password ]; then
  password=$(cat secrets/audit_db_password)
else
  password=$(random 24 | tr '+/' '-_')
fi
write audit_db_password "$password"
write msr_database_url "postgresql://missed_session:${password}@audit-postgres:5432/missed_session"
write msr_encryption_keys "{\"$(date -u +%Y-%m)\": \"$(random 32)\"}"
if [ ! -e secrets/msr.toml ]; then
  cp deploy/msr.example.toml secrets/msr.toml
  echo "secrets/msr.toml written from deploy/msr.example.toml: fill in the channel"
fi
