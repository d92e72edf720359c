"""`policy=claude`: prompt (the text sent), client (the Anthropic exchange with its transcripts and cost in tokens
and dollars) and policy (decisions, validation, fallback)."""
