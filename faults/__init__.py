"""The fault suite: the service's real processes, killed and restarted while sessions run."""
