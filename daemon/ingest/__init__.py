"""Files into the ledger: claim, validate, record accepted rows, quarantine the rest."""
