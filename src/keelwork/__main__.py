"""``python -m keelwork`` is the ``keelwork`` command."""

from keelwork.cli import main

main()
