"""GPU exporter (``llm-monitor-exporter gpu``, ``llm_monitor_gpu_*``): the collector (``gpu``), the NVML facade
over pynvml (``nvml``) and the simulation backend for demos and tests without a GPU (``nvml_simulation``);
``spec`` is what the command line registers.
"""
