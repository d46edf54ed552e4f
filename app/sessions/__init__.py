"""Step 4: the live mediation room: messages, caucus channels, offers, conduct, fan-out."""
