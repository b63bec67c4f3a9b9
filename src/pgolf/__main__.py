"""`python -m pgolf` (and `torchrun -m pgolf`) entry point."""

from pgolf.cli import main

raise SystemExit(main())
