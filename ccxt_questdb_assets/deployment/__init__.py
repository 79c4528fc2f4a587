"""The deployment over several hosts (``deploy/``, docs/operations.md): what Dagster's instance
loads beside its own classes. Imports only Dagster, so every process that opens the instance
(webserver, daemon, code servers, runs) loads it in milliseconds."""
