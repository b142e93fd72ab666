"""Allow ``python -m llm_monitor_exporters``."""

import sys

from llm_monitor_exporters.cli import main

sys.exit(main())
