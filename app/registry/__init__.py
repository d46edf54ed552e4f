"""The filing registry (备案): an append-only, hash-chained Merkle-tree log of sealed agreements."""
