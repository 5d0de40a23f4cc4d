"""Use cases every entry point calls (see TEAM.md, contract C)."""
