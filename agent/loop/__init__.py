"""The study loop: the Explorer (wiring and rounds), its round planner, block-end decisions and the resume-after-
kill recovery. The highest agent layer below the CLI (agent.__main__)."""
