"""`python -m core.guard`: the command line."""
import sys

from core.guard import main

sys.exit(main())
