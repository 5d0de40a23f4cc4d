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
password() {  # password NAME: the existing one, or a new one
  if [ -e "secrets/$1" ]; then cat "secrets/$1"; else random 24 | tr '+/' '-_'; fi
}
superuser=$(password audit_db_password)
owner=$(password msr_owner_password)
service=$(password msr_service_password)
reviewer=$(password msr_reviewer_password)
write audit_db_password "$superuser"
write msr_owner_password "$owner"
write msr_service_password "$service"
write msr_reviewer_password "$reviewer"
database=audit-postgres:5432/missed_session
write msr_database_owner_url "postgresql://msr_owner:${owner}@${database}"
write msr_database_url "postgresql://msr_service:${service}@${database}"
write msr_encryption_keys "{\"$(date -u +%Y-%m)\": \"$(random 32)\"}"
if [ ! -e secrets/msr.toml ]; then
  cp deploy/msr.example.toml secrets/msr.toml
  echo "secrets/msr.toml written from deploy/msr.example.toml: fill in the channel"
fi
