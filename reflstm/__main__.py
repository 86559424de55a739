"""python -m reflstm: the command line (see reflstm.cli)."""

import sys

from reflstm.cli import main

sys.exit(main())
