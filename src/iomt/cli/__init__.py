"""The ``iomt`` command line: one module per command group."""
