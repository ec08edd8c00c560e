"""One module per ``livecue`` subcommand (see :mod:`livecue.cli`)."""
