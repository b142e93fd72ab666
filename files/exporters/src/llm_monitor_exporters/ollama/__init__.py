"""Ollama monitoring proxy (``llm-monitor-exporter ollama_proxy``, ``llm_monitor_ollama_*``): the asyncio reverse
proxy, its poller and metrics endpoint (``ollama_proxy``, aiohttp), the metrics it records and their label
normalisation (``ollama_metrics``); ``spec`` is what the command line registers.

Importing ``ollama_proxy`` loads aiohttp: only this exporter (and the traffic generator) may do so.
"""
