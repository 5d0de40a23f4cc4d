"""starter.py's commands: parsing and rendering over the application layer."""
