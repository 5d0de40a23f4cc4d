"""Every side effect of the session protocol, as retryable, idempotent Temporal activities."""
