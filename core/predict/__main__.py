"""`python -m core.predict`: the command line."""
import sys

from core.predict import main

sys.exit(main())
