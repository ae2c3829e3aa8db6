"""`python -m loscat_hf ...` is `loscat-hf ...` (handy in worktrees and under `accelerate launch -m`)."""

import sys

from loscat_hf.cli import main

sys.exit(main())
