"""HTTP conventions shared by both Flask apps: problem details, request ids, JSON bodies."""
