import sys

from linrepro.runner.cli import main

sys.exit(main())
