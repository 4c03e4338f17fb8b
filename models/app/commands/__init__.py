"""One module per ``maxformer`` subcommand, each with ``add_arguments`` and ``run``."""
