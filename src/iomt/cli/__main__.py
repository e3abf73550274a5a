"""``python -m iomt.cli``: the same as the ``iomt`` command."""

from iomt.cli.app import main

main()
