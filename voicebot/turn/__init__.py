"""End of turn: deciding from the caller's audio, what was said and what the dialogue expects
whether a pause ends the caller's turn."""
