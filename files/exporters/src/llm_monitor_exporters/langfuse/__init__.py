"""Langfuse exporter (``llm-monitor-exporter langfuse``, ``llm_monitor_langfuse_*``): usage, cost, latency and
errors per project from the Langfuse public API (``langfuse``); ``spec`` is what the command line registers.
"""
