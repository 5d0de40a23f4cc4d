"""Pure domain: models, the protocol's decisions, message templates and concerns. No I/O."""
