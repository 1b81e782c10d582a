"""``python -m craftreel.cli_main``: the command line without the installed script."""

from craftreel.cli import main

main()
