"""Root conftest: being here puts the repository root on sys.path (tests import tests.support)."""
