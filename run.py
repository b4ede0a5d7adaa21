"""Start the clinic: `python run.py` (web and jobs in one process), `python run.py --demo` (with a
demo clinic), `python run.py --help` for the other commands."""

import sys

from clinic.cli import main

if __name__ == "__main__":
    sys.exit(main())
