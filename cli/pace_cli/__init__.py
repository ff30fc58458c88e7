"""The ``pace`` command line: glue between the service, the SDK and the user's terminal."""
