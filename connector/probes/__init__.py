"""Network I/O primitives (TLS, HTTP, DNS) that checks use to observe targets; no judgement lives here."""
