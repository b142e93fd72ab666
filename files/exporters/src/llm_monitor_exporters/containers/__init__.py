"""Containers exporter (``llm-monitor-exporter containers``, ``container_*`` with cAdvisor names and
``llm_monitor_container_*``): the collector (``containers``) over cgroup files and Docker metadata
(:mod:`llm_monitor_exporters.docker`); ``spec`` is what the command line registers.
"""
