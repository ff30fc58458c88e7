"""The HTTP layer: dependencies, error rendering and thin routes."""
