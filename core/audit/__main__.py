"""`python -m core.audit`: the command line."""
import sys

from core.audit import main

sys.exit(main())
