"""``python -m bigcat``."""

from bigcat.cli import main

if __name__ == "__main__":
    main()
