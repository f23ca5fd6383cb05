import sys

from apt_ostree.cli.main import main

sys.exit(main())
