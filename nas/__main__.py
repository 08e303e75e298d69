"""`python -m nas ...` runs the command line, as the installed `nas` script does."""
from nas.cli import main

raise SystemExit(main())
