import sys

from impax.cli import main

sys.exit(main())
