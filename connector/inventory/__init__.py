"""Layer 2: what the connector knows of the estate across scans (finding history, then assets and drift)."""
