"""`python -m core.evaluation`: the command line."""
import sys

from core.evaluation.evaluate import main

sys.exit(main())
