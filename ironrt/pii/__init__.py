"""PII detection and redaction for the governance router's safety policy."""
