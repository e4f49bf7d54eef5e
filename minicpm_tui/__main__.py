import sys

from minicpm_tui.cli import main

sys.exit(main())
