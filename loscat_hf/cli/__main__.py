"""`python -m loscat_hf.cli` (what `accelerate launch -m loscat_hf.cli train ...` runs)."""

import sys

from loscat_hf.cli import main

sys.exit(main())
