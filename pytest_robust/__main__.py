"""``python -m pytest_robust verify|export``: the same as the ``pytest-robust`` command."""

from pytest_robust.cli import main

raise SystemExit(main())
