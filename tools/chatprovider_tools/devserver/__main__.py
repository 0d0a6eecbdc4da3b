"""``python -m chatprovider_tools.devserver``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
