"""Prometheus exporters for GPU/LLM fleets (part of the llm_monitor.fleet Ansible collection)."""

__version__ = "0.1.0"
