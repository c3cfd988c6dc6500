"""`python -m workers.bench`, the same as `cloudathome bench`."""

import sys

from workers.bench.run import main

sys.exit(main())
