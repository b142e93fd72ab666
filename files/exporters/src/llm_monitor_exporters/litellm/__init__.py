"""LiteLLM exporter (``llm-monitor-exporter litellm``, ``llm_monitor_litellm_*``): liveness, catalog, cached
deployment health and spend of a LiteLLM proxy (``litellm``); ``spec`` is what the command line registers.
"""
