"""``python -m journal_core`` runs the ``journal`` command line."""

from journal_core.cli import main

main()
