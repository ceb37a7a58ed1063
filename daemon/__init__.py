"""The cltool service: config, inbox and ledger, state store, scheduler, cycle, CLI."""
