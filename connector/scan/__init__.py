"""Layer 2: run checks over assets and turn what they observe into findings (engine, context, checks/)."""
