"""``python -m craftreel.cli_main``: the command line without the installed script."""

from craftreel.cli import main

if __name__ == "__main__":  # serve --workers starts processes that import this module again
    main()
