"""What the service needs of Temporal itself, in one place.

The Temporal client and its data converter, the search attributes, Worker Versioning
and starting a session's workflow exactly once.
"""
