"""Command modules of `starter.py` (see TEAM.md: the intake helper splits starter.py)."""
