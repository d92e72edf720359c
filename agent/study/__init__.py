"""A study as data: the journal, its fold into node/block state, the UCB tree, statistics, the policy's read-only
view, config identity, proposals, the instruction file and the shared one-line result descriptions. Imports only
agent.runs and mpm_inr."""
