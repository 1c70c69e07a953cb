"""Layer 3: findings become durable events and reach the SIEMs (spool, shipping, pipeline, sinks/)."""
