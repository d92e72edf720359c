"""Agent code modifications (issue 6): allow-listed, guarded, smoke-tested, committed on the study's own branch,
reverted on failure.

- `agent.codemod.handler.CodeModHandler`: the `Explorer(code_mod_handler=...)` seam (built by the Explorer when
  `codemod.enabled=true`): worktree + branch `explore/<name>`, apply, smoke test, commit, revert; the members the
  loop calls are declared by `agent.codemod.hooks.CodeModHooks`;
- `agent.codemod.diffparse` / `agent.codemod.guard`: strict diff parsing and the guardrails;
- `agent.codemod.paths`: the allow-list's glob syntax and the fixed protected paths (read by settings and guard);
- `agent.codemod.smoke`: the pre-commit smoke test (import, then a few training steps);
- `agent.codemod.modifications` / `agent.codemod.library`: the heuristic policy's hypothesis-tagged modifications
  (data) and their trigger;
- `agent.codemod.settings`: the `codemod:` block of the explore config;
- `agent.codemod.history`: the journal's `code` events as one-line notes (memory, analysis, prompt);
- `agent.codemod.layout`: where a study keeps its code (`<study>/code/work`, exports, smoke logs).

The claude prompt's section on code modifications is `agent.policies.code_context`.

This package sits below agent.policies and agent.loop (it imports agent.runs and agent.study only), so the
heuristic policy imports `library` without pulling in the loop.
"""
