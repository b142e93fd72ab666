"""vLLM exporter (``llm-monitor-exporter vllm``, ``llm_monitor_vllm_*`` and the ``/sd/vllm`` HTTP SD document): the
collector and probes (``vllm``), which containers are vLLM servers and at which address Prometheus reaches them
(``vllm_discovery``); ``spec`` is what the command line registers.
"""
