"""Elasticsearch: the bulk sink, and the index templates, ILM policy and pipeline it installs."""

from connector.delivery.sinks.elasticsearch.sink import SINK

__all__ = ["SINK"]
