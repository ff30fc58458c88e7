"""Repository functions: they read and write through a Session, flush, never commit.

The caller (one HTTP request, or a CLI command) owns the transaction.
"""
