"""Payload encryption and the codec server that lets the Web UI read sealed payloads."""
