"""The local stack and the `crm` command line: development tools, never deployed."""
