"""Docker, without the Docker SDK: the Engine API client (``docker_api``), the container metadata thread fed by
list/inspect and the event stream (``docker_meta``), and the cgroup v1/v2 readers (``cgroups``).

Used by the containers exporter (all three) and the vLLM exporter (metadata, for discovery).
"""
