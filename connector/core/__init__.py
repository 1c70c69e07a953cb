"""Layer 0, the vocabulary every other layer speaks: the model, events, errors, units, the catalog, the plugin
registry, logging and metrics. It imports nothing else of the connector."""
