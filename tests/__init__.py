# Before any helper in tests/support/ is imported, so that its asserts explain themselves.
import pytest

pytest.register_assert_rewrite("tests.support")
