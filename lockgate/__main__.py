"""`python -m lockgate` runs the command line."""

from lockgate.cli import main

raise SystemExit(main())
