# Sourced (not executed: no execute bit) by the postgres image's entrypoint on a new
# cluster, before 10-roles.sh (scripts/postgres_init_roles.sh), which reads the role
# passwords from these variables: here they come from compose secrets, not from the
# environment, so they never appear in `docker inspect`.
MSR_OWNER_PASSWORD=$(cat /run/secrets/msr_owner_password)
MSR_SERVICE_PASSWORD=$(cat /run/secrets/msr_service_password)
MSR_REVIEWER_PASSWORD=$(cat /run/secrets/msr_reviewer_password)
export MSR_OWNER_PASSWORD MSR_SERVICE_PASSWORD MSR_REVIEWER_PASSWORD
