"""`python -m app`: the `pixeltrack` command line without the console script."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
