"""`python -m core.site`: the command line."""
import sys

from core.site import main

sys.exit(main())
