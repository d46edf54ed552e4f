"""Personal-information rights (PIPL ch. IV): see, copy, correct, withdraw consent, erase."""
