"""The subcommands of ``python -m ian_d2.search``, one module each.

Each module has ``NAME`` (the subcommand), ``add_parser(subparsers)`` (its arguments) and
``run(args)`` (its body); :mod:`.common` holds the argument groups and logging set-up that
several share, :mod:`.variant` the choice of an exported model for ``index`` and ``serve``
(``--precision``, ``--force-precision``). :mod:`ian_d2.search.cli` assembles them into the command line.

This package imports none of its modules (nor do they import :mod:`ian_d2.search.cli`): the
dispatcher imports the commands, the commands import the search modules below them.
"""
