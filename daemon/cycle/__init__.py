"""One update: choose the batches, train, evaluate on the same evidence, gate, register, record."""
