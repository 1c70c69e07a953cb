"""Splunk: the HTTP Event Collector sink, and the management-port setup and verification beside it."""

from connector.delivery.sinks.splunk_hec.sink import SINK

__all__ = ["SINK"]
