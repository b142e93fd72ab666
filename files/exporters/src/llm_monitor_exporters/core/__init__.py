"""What every exporter shares: the collector interface and its background loop, config loading, the metrics HTTP
server and its web config (TLS, basic auth), self-metrics, secrets, a small HTTP client, /proc readers, logging.

Nothing here imports an exporter; the exporters import from here.
"""
