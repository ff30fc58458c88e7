"""Configuration, database engine and the embedded PostgreSQL server."""
