import sys

from slowatch.cli import main

sys.exit(main())
