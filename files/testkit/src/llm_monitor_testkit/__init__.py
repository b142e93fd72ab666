"""TEST DOUBLES: simulated Ollama, vLLM and Langfuse servers for the tests, benchmarks and demo fleet of
llm_monitor.fleet. Nothing here talks to a real service and every value is made up.

Not part of the exporters (``llm-monitor-exporters``): production hosts do not install this distribution.
"""

__version__ = "0.1.0"
