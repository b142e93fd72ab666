"""``python -m llm_monitor_testkit`` = ``llm-monitor-testkit``."""

import sys

from llm_monitor_testkit.cli import main

sys.exit(main())
