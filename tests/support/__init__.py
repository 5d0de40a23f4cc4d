"""Helpers the tests share, so that no test module imports another.

A test module can then change without breaking another; tests/test_layout.py checks.
pytest rewrites their asserts as a test module's (tests/__init__.py asks it to).
"""
