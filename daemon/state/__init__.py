"""The SQL state store (ledger, row index, event log) and the named locks in it."""
