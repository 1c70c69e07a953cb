"""SIEM-side setup and verification: Splunk (splunk-sdk) and Elasticsearch (templates, ILM, pipeline)."""
