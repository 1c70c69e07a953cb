"""Parsers for header and record grammars (HSTS, CSP, SPF, ...), shared by checks."""
