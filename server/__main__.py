"""``python -m server``: the same as the ``chatd`` command."""

from server.cli import main

raise SystemExit(main())
