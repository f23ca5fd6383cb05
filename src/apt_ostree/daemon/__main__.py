import sys

from apt_ostree.daemon.main import main

sys.exit(main())
