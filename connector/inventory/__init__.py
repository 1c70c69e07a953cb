"""Layer 2: what the connector knows of the estate across scans (the finding ledger, then assets and drift)."""
