"""Raw TLS probing: ClientHello construction, ServerHello parsing, per-endpoint memoised prober."""
