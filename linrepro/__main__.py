import sys

from linrepro.cli import main

sys.exit(main())
