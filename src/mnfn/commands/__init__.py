"""Subcommands of the ``mnfn`` CLI, one module each (discovered by :mod:`mnfn.cli`)."""
