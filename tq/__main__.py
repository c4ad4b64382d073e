"""`python -m tq`: the same as the `tq` command."""

from .cli.main import main

if __name__ == "__main__":
    main()
