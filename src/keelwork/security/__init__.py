"""Who may call: hashed API keys and the principals they resolve to."""
