"""Sinks: where normalised events go (file, stdout; Splunk HEC, Elasticsearch and syslog arrive with the spool)."""
