"""Agent code modifications (issue 6): allow-listed, guarded, smoke-tested, committed on the study's own branch,
reverted on failure.

- `agent.codemod.handler.CodeModHandler`: the `Explorer(code_mod_handler=...)` seam (built by the Explorer when
  `codemod.enabled=true`): worktree + branch `explore/<name>`, apply, smoke test, commit, revert;
- `agent.codemod.diffparse` / `agent.codemod.guard`: strict diff parsing and the guardrails;
- `agent.codemod.smoke`: the pre-commit smoke test (import, then a few training steps);
- `agent.codemod.library`: the heuristic policy's hypothesis-tagged modifications and their trigger;
- `agent.codemod.settings`: the `codemod:` block of the explore config;
- `agent.codemod.history`: the journal's `code` events as one-line notes (memory, analysis, prompt);
- `agent.codemod.layout`: where a study keeps its code (`<study>/code/work`, exports, smoke logs).

The claude prompt's section on code modifications is `agent.policies.code_context`.

Submodules are imported on use: the heuristic policy imports `library` without pulling in the loop.
"""
