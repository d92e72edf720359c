"""A strict parser of git-style unified diffs, so guardrails judge the same patch that `git apply` will apply.

Why strict: a guardrail that reads a diff more loosely than git does can be fooled (a path hidden in a header
git honours, an added line counted as a header). So this parser accepts only what it fully understands and
raises `DiffError` (one line, names the diff line) for everything else:

- file patches start with `diff --git a/<old> b/<new>` (or, for plain unified diffs, `--- a/<old>` / `+++ b/<new>`);
- extended headers: `index`, `new file mode`, `deleted file mode`, `old mode`/`new mode`, `similarity index`,
  `dissimilarity index`, `rename from/to`, `copy from/to`; binary patches are recognised and reported as such;
- hunks `@@ -a,b +c,d @@` are consumed by their line counts, exactly like git, so a `+++`-looking added line
  is an added line, not a header;
- paths must be plain (`[A-Za-z0-9_./-]`, no quoting, no `..`, not absolute) and carry git's `a/`/`b/` prefixes;
- no text outside file patches except blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_MODE = re.compile(r"^(?:new file mode|deleted file mode|old mode|new mode) ([0-7]{6})$")


class DiffError(ValueError):
    """The diff cannot be parsed safely (the message is one line and names the problem)."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[str] = field(default_factory=list)  # raw hunk lines, each starting with ' ', '-', '+' or '\\'

    @property
    def added(self) -> list[str]:
        return [ln[1:] for ln in self.lines if ln.startswith("+")]

    @property
    def removed(self) -> list[str]:
        return [ln[1:] for ln in self.lines if ln.startswith("-")]


@dataclass
class FilePatch:
    """One file's part of a diff. `old_path` is None for a new file, `new_path` None for a deletion."""

    old_path: str | None
    new_path: str | None
    line: int                                   # 1-based line of the patch header in the diff
    modes: list[str] = field(default_factory=list)
    old_mode: str | None = None
    new_mode: str | None = None
    rename: bool = False
    copy: bool = False
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.binary:
            return "binary"
        if self.old_path is None:
            return "new"
        if self.new_path is None:
            return "delete"
        if self.copy:
            return "copy"
        if self.rename or self.old_path != self.new_path:
            return "rename"
        return "modify"

    @property
    def paths(self) -> list[str]:
        return [p for p in dict.fromkeys((self.old_path, self.new_path)) if p is not None]

    @property
    def path(self) -> str:
        """The path this patch writes (the old path for a deletion)."""
        return self.new_path or self.old_path or ""

    @property
    def n_added(self) -> int:
        return sum(len(h.added) for h in self.hunks)

    @property
    def n_removed(self) -> int:
        return sum(len(h.removed) for h in self.hunks)


def check_path(raw: str, where: str) -> str:
    """A repository-relative path from a diff, or DiffError if it is not plain and safe."""
    p = raw
    if not p:
        raise DiffError(f"{where}: empty path")
    if p.startswith('"'):
        raise DiffError(f"{where}: quoted path {p[:80]!r} (special characters are not allowed in paths)")
    if p.startswith("/"):
        raise DiffError(f"{where}: absolute path {p[:80]!r}")
    if not _PLAIN_PATH.match(p):
        raise DiffError(f"{where}: path {p[:80]!r} has characters other than letters, digits, _ . - /")
    parts = p.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise DiffError(f"{where}: path {p[:80]!r} has an empty, '.' or '..' component")
    if any(part == ".git" or part.startswith(".git") for part in parts):
        raise DiffError(f"{where}: path {p[:80]!r} touches git metadata")
    return p


def _side(raw: str, prefix: str, where: str) -> str | None:
    """`a/x` -> `x` (prefix 'a/'), `/dev/null` -> None. A tab starts a timestamp (plain diffs); it is dropped."""
    s = raw.split("\t", 1)[0].rstrip("\r")
    if s == "/dev/null":
        return None
    if not s.startswith(prefix):
        raise DiffError(f"{where}: path {s[:80]!r} lacks git's '{prefix}' prefix (send a `git diff` style patch)")
    return check_path(s[len(prefix):], where)


def _git_header(line: str, n: int) -> tuple[str, str]:
    rest = line[len("diff --git "):]
    if rest.startswith('"'):
        raise DiffError(f"line {n}: quoted path in the diff header (special characters are not allowed)")
    parts = rest.split(" ")
    if len(parts) != 2 or not parts[0].startswith("a/") or not parts[1].startswith("b/"):
        raise DiffError(f"line {n}: cannot read the two paths of {line[:120]!r}")
    return check_path(parts[0][2:], f"line {n}"), check_path(parts[1][2:], f"line {n}")


def parse(text: str) -> list[FilePatch]:
    """All file patches of a diff, in order (see the module docstring for what is refused)."""
    if not isinstance(text, str) or not text.strip():
        raise DiffError("the diff is empty")
    if "\x00" in text:
        raise DiffError("the diff contains NUL bytes (binary content)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        n = i + 1
        if not line.strip():
            i += 1
            continue
        if line.startswith("diff --git "):
            i = _parse_git_patch(lines, i, patches)
        elif line.startswith("--- "):
            i = _parse_plain_patch(lines, i, patches)
        else:
            raise DiffError(f"line {n}: unexpected text outside a file patch: {line[:80]!r} (send only the diff)")
    if not patches:
        raise DiffError("the diff has no file patch")
    seen: set[str] = set()
    for p in patches:
        for path in p.paths:
            if path in seen:
                raise DiffError(f"line {p.line}: {path} is patched twice in one diff")
            seen.add(path)
    return patches


def _parse_git_patch(lines: list[str], i: int, out: list[FilePatch]) -> int:
    n0 = i + 1
    a, b = _git_header(lines[i].rstrip("\r"), n0)
    fp = FilePatch(old_path=a, new_path=b, line=n0)
    i += 1
    minus: str | None | bool = False   # False: no ---/+++ lines seen
    while i < len(lines):
        line = lines[i].rstrip("\r")
        n = i + 1
        m = _MODE.match(line)
        if m:
            mode = m.group(1)
            fp.modes.append(mode)
            if line.startswith("new file mode"):
                fp.old_path = None
            elif line.startswith("deleted file mode"):
                fp.new_path = None
            elif line.startswith("old mode"):
                fp.old_mode = mode
            else:
                fp.new_mode = mode
        elif line.startswith(("index ", "similarity index ", "dissimilarity index ")):
            pass
        elif line.startswith(("rename from ", "copy from ")):
            src = check_path(line.split(" ", 2)[2], f"line {n}")
            if src != a:
                raise DiffError(f"line {n}: '{line[:80]}' does not match the header path {a}")
            fp.rename, fp.copy = fp.rename or line.startswith("rename"), fp.copy or line.startswith("copy")
        elif line.startswith(("rename to ", "copy to ")):
            dst = check_path(line.split(" ", 2)[2], f"line {n}")
            if dst != b:
                raise DiffError(f"line {n}: '{line[:80]}' does not match the header path {b}")
        elif line.startswith("Binary files ") or line == "GIT binary patch":
            fp.binary = True
            i += 1
            while i < len(lines) and not lines[i].startswith("diff --git "):
                i += 1  # skip the encoded payload (two blocks); a binary patch is refused by the guardrails
            break
        elif line.startswith("--- "):
            minus = _side(line[4:], "a/", f"line {n}")
            if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
                raise DiffError(f"line {n}: '---' is not followed by a '+++' line")
            plus = _side(lines[i + 1].rstrip("\r")[4:], "b/", f"line {n + 1}")
            if minus != fp.old_path or plus != fp.new_path:
                raise DiffError(f"line {n}: the ---/+++ paths ({minus}, {plus}) do not match the diff --git header "
                                f"({fp.old_path}, {fp.new_path})")
            i = _parse_hunks(lines, i + 2, fp)
            break
        elif line.startswith("diff --git ") or not line.strip():
            break
        else:
            raise DiffError(f"line {n}: unknown extended header {line[:80]!r}")
        i += 1
    if not fp.binary and minus is False and not (fp.rename or fp.copy or fp.modes):
        raise DiffError(f"line {n0}: file patch for {fp.path} has no ---/+++ lines and no hunks")
    out.append(fp)
    return i


def _parse_plain_patch(lines: list[str], i: int, out: list[FilePatch]) -> int:
    n = i + 1
    old = _side(lines[i].rstrip("\r")[4:], "a/", f"line {n}")
    if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
        raise DiffError(f"line {n}: '---' is not followed by a '+++' line")
    new = _side(lines[i + 1].rstrip("\r")[4:], "b/", f"line {n + 1}")
    if old is None and new is None:
        raise DiffError(f"line {n}: both sides of the patch are /dev/null")
    fp = FilePatch(old_path=old, new_path=new, line=n)
    i = _parse_hunks(lines, i + 2, fp)
    out.append(fp)
    return i


def _parse_hunks(lines: list[str], i: int, fp: FilePatch) -> int:
    while i < len(lines):
        line = lines[i].rstrip("\r")
        m = _HUNK.match(line)
        if not m:
            break
        old_len = int(m.group(2)) if m.group(2) is not None else 1
        new_len = int(m.group(4)) if m.group(4) is not None else 1
        h = Hunk(int(m.group(1)), old_len, int(m.group(3)), new_len)
        header_line = i + 1
        i += 1
        o, w = old_len, new_len
        while o > 0 or w > 0:
            if i >= len(lines):
                raise DiffError(f"hunk at line {header_line} of {fp.path} ends early ({o} old / {w} new lines "
                                f"missing)")
            raw = lines[i].rstrip("\r")
            tag = raw[:1]
            if raw == "":
                raw, tag = " ", " "  # git reads an empty line in a hunk as an empty context line
            if tag == " ":
                o, w = o - 1, w - 1
            elif tag == "-":
                o -= 1
            elif tag == "+":
                w -= 1
            elif tag == "\\":
                pass
            else:
                raise DiffError(f"line {i + 1}: {raw[:60]!r} inside a hunk of {fp.path} is not a context, '-' or "
                                f"'+' line (wrong hunk line counts?)")
            if o < 0 or w < 0:
                raise DiffError(f"line {i + 1}: hunk of {fp.path} has more lines than its header says")
            h.lines.append(raw)
            i += 1
        while i < len(lines) and lines[i].startswith("\\"):
            h.lines.append(lines[i])  # "\ No newline at end of file" after the last counted line
            i += 1
        fp.hunks.append(h)
    if not fp.hunks:
        where = f"line {i + 1}" if i < len(lines) else "end of diff"
        raise DiffError(f"{where}: file patch for {fp.path} has no hunk")
    return i
