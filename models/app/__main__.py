"""``python -m models.app`` is ``maxformer`` (for ``torchrun -m models.app train ...``)."""

import sys

from models.app.cli import main

sys.exit(main())
