"""`python -m core.report`: the command line."""
import sys

from core.report import main

sys.exit(main())
