"""``python -m chatprovider.devserver``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
