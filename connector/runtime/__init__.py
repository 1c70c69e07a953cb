"""Layer 4, the one wiring point: configuration, the collector (one scan run), the scheduler, state, the sidecar."""
