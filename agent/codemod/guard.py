"""Guardrails for a proposed code change: which files, which imports, which code it may touch.

Two passes, both before anything runs:
1. `check_patches` judges the parsed diff (agent.codemod.diffparse): paths against the allow-list and the fixed
   protected list (metrics, data loading, evaluation, the agent itself), file kinds (no binary, symlink, mode
   change; new files / deletions / renames only inside the allow-list), size, and the added lines' import
   statements and `eval`/`exec`/`__import__`/`importlib` tokens (these also catch code in files that no longer
   parse).
2. `check_sources` compares each changed file's old and new source (after `git apply` in the study's worktree):
   imports the change adds, names and string constants whose count it raises (open, eval, getattr with a computed
   name, sys.modules, torch.load, ...), and the functions of the evaluation path, which must stay identical.

The protected list and the forbidden imports are fixed here; the config can narrow the allow-list or the allowed
imports (`codemod.allow`, `codemod.allowed_imports`) but never open these.

This is a static screen of the usual ways out (imports, builtins, torch's native/file entry points, introspection,
the ground truth held by the training module), not a sandbox: it cannot see every path to a file (a torch profiler
trace, `ndarray.dump`, torch's private file helpers). What holds those is the sandbox every run of modified code
starts in (agent.codemod.sandbox: it reads only its code, the datasets and Python, and writes only its run dir).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from agent.codemod.diffparse import FilePatch
from agent.codemod.paths import protected_reason
from agent.codemod.settings import CodeModSettings


class GuardError(ValueError):
    """A change the guardrails refuse; the message is the recorded reason (one line)."""


#: functions of the evaluation path that must stay identical (class.method per file)
PROTECTED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "mpm_inr/training/module.py": ("INRModule.forward", "INRModule.predict_frames", "INRModule.estimate_r2",
                                   "INRModule.loss_curve", "INRModule.source", "INRModule.on_train_end",
                                   "INRModule.on_fit_start"),
    # every particle at every frame for the final metrics and the codec: one path, shared by all inr_types
    "mpm_inr/models/registry.py": ("InrType.predict_frames",),
}

#: import roots refused with a specific reason (checked before the allow-list, so config cannot allow them)
FORBIDDEN_IMPORTS: dict[str, str] = {
    **{m: "process / OS access" for m in (
        "os", "subprocess", "shutil", "sys", "pathlib", "io", "tempfile", "glob", "signal", "multiprocessing",
        "threading", "concurrent", "ctypes", "cffi", "mmap", "resource", "pty", "fcntl", "posix", "nt", "pwd",
        "getpass", "platform", "atexit", "gc", "inspect", "code", "codeop", "runpy", "builtins", "importlib",
        "pkgutil", "zipimport", "pickle", "marshal", "shelve", "dbm", "sqlite3", "zipfile", "tarfile")},
    **{m: "network access" for m in (
        "socket", "ssl", "select", "selectors", "asyncio", "urllib", "urllib3", "requests", "http", "httpx",
        "httpx2", "aiohttp", "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "socketserver", "xmlrpc",
        "webbrowser", "email", "wandb", "anthropic", "torch.hub", "torch.utils.model_zoo", "torch.distributed",
        "torch.multiprocessing", "torch.utils.cpp_extension", "torch.package", "torch.utils.data")},
    **{m: "metrics / data / evaluation code" for m in (
        "mpm_inr.metrics", "mpm_inr.data", "mpm_inr.sim", "mpm_inr.training.run", "mpm_inr.training.outputs",
        "mpm_inr.training.datamodule", "mpm_inr.training.validate", "numpy", "agent", "hydra", "omegaconf")},
}

#: names / attributes whose count a change may not raise (file, process, network, dynamic-code access)
FORBIDDEN_NAMES = frozenset((
    "eval", "exec", "compile", "__import__", "importlib", "open", "globals", "locals", "vars", "__builtins__",
    "builtins", "breakpoint", "exit", "quit", "system", "popen", "Popen", "spawn", "fork", "urlopen",
    "delattr", "__dict__", "__class__", "__subclasses__", "__globals__", "__code__", "__reduce__", "__loader__",
    "__spec__", "__file__", "environ", "getenv", "putenv", "unlink", "remove", "rmtree", "rename",
    "write_text", "write_bytes", "read_text", "read_bytes", "mkdir", "chmod", "Path", "load", "save", "hub",
    "load_inline", "fromfile", "tofile", "memmap", "os", "sys", "subprocess", "socket", "shutil", "pathlib",
    "train_seconds", "_started", "perf_counter", "process_time", "monotonic",
    # native code, processes and files reachable through torch attributes without an import
    "load_library", "from_file", "cpp_extension", "distributed", "multiprocessing", "_C", "classes",
    # frame / traceback introspection (reaching other objects' locals, e.g. the ground truth)
    "f_locals", "f_globals", "f_back", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "_getframe",
    # the ground truth and the trainer that holds the data: the training step already has what it needs
    "targets", "datamodule", "trainer",
))
#: dunder attributes a change may use (anything else, e.g. __subclasses__ or __traceback__, is refused)
SAFE_DUNDERS = frozenset(("__init__", "__name__", "__future__", "__all__"))
_TOKENS = re.compile(r"__import__|\bimportlib\b|\beval\s*\(|\bexec\s*\(|\bcompile\s*\(")
#: the run's timing (training_time, steps_per_s in metrics.json) is measured with these: no line using them may change
_TIMING = re.compile(r"\btrain_seconds\b|\b_started\b|\bperf_counter\b")
_IMPORT_LINE = re.compile(r"^\s*import\s+(.+)$")
_FROM_LINE = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+(.+)$")
_FILE_MODE = "100644"


def import_reason(module: str, settings: CodeModSettings) -> str | None:
    """Why importing `module` (dotted, absolute) is refused, or None if allowed."""
    for root, why in FORBIDDEN_IMPORTS.items():
        if module == root or module.startswith(root + "."):
            return f"adds an import of {module} ({why} is not allowed in code modifications)"
    for ok in settings.allowed_imports:
        if module == ok or module.startswith(ok + "."):
            return None
    return (f"adds an import of {module}, which is not in codemod.allowed_imports "
            f"({', '.join(settings.allowed_imports)})")


def check_patches(patches: Sequence[FilePatch], settings: CodeModSettings) -> None:
    """Pass 1 (see module docstring); raises GuardError with the reason."""
    total = 0
    for fp in patches:
        if fp.binary:
            raise GuardError(f"binary patch for {fp.path}: only text changes to Python modules are allowed")
        for mode in fp.modes:
            if mode != _FILE_MODE:
                kind = {"120000": "a symlink", "160000": "a submodule", "100755": "an executable"}.get(mode, mode)
                raise GuardError(f"{fp.path}: file mode {mode} ({kind}) is not allowed")
        if fp.old_mode is not None or fp.new_mode is not None:
            raise GuardError(f"{fp.path}: mode changes are not allowed")
        for path in fp.paths:
            why = protected_reason(path)
            if why:
                raise GuardError(f"touches {path}: code modifications may not change {why}")
            if not settings.allowed(path):
                raise GuardError(f"touches {path}, outside the allow-list ({', '.join(settings.allow)})")
        if fp.kind == "new" and not fp.path.endswith(".py"):
            raise GuardError(f"creates {fp.path}: new files must be Python modules")
        for h in fp.hunks:
            for line in h.added:
                check_added_line(line, fp.path, settings)
            for line in h.added + h.removed:
                if _TIMING.search(line):
                    raise GuardError(f"{fp.path}: the change touches how the run's training time is measured "
                                     f"({line.strip()[:80]!r})")
        total += fp.n_added + fp.n_removed
    if total > settings.max_changed_lines:
        raise GuardError(f"changes {total} lines, more than codemod.max_changed_lines={settings.max_changed_lines} "
                         f"(one small change at a time)")


def check_added_line(line: str, path: str, settings: CodeModSettings) -> None:
    if _TOKENS.search(line):
        raise GuardError(f"{path}: an added line uses {_TOKENS.search(line).group(0).strip('( ')} "
                         f"(dynamic code is not allowed): {line.strip()[:80]!r}")
    m = _IMPORT_LINE.match(line)
    if m:
        for part in m.group(1).split(","):
            mod = part.strip().split(" ")[0].strip("()")
            if mod:
                why = import_reason(mod, settings)
                if why:
                    raise GuardError(f"{path}: {why}")
        return
    m = _FROM_LINE.match(line)
    if m:
        mod = _resolve(m.group(1), path)
        names = [n for n in re.split(r"[,\s()]+", m.group(2)) if n.isidentifier() and n != "as"]
        for full in [mod] + [f"{mod}.{n}" for n in names]:
            why = import_reason(full, settings)
            if why:
                raise GuardError(f"{path}: {why}")


def _resolve(module: str, path: str) -> str:
    """Absolute module name of a (possibly relative) `from X import` in the file at `path`."""
    dots = len(module) - len(module.lstrip("."))
    if not dots:
        return module
    package = path[:-3].replace("/", ".").split(".")[:-1] if path.endswith(".py") else path.split("/")
    base = package[: len(package) - (dots - 1)] if dots > 1 else package
    rest = module[dots:]
    return ".".join(base + ([rest] if rest else []))


# ------------------------------------------------------------------------------------------- pass 2 (sources)


def _imports(tree: ast.AST, path: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.name] += 1
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve("." * node.level + (node.module or ""), path)
            out[mod] += 1
            for a in node.names:
                if a.name != "*":
                    out[f"{mod}.{a.name}"] += 1
    return out


def _names(tree: ast.AST) -> Counter[str]:
    out: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out[node.id] += 1
        elif isinstance(node, ast.Attribute):
            out[node.attr] += 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] += 1
        elif isinstance(node, ast.alias):
            out[(node.asname or node.name).split(".")[0]] += 1
    return out


def _strings(tree: ast.AST) -> Counter[str]:
    return Counter(n.value.strip() for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _dynamic_attr_calls(tree: ast.AST) -> int:
    """getattr/setattr/hasattr calls whose attribute name is not a plain public string literal."""
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr"):
            arg = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("_")):
                n += 1
    return n


def _timing_statements(tree: ast.AST) -> Counter[str]:
    """Every assignment to the run's clock attributes (train_seconds, _started), as ast dumps."""
    out: Counter[str] = Counter()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and sub.attr in ("train_seconds", "_started"):
                    out[ast.dump(node)] += 1
    return out


def _functions(tree: ast.AST) -> dict[str, str]:
    """'Class.method' / 'function' -> ast.dump (without line numbers) of every def in the module."""
    out: dict[str, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[prefix + child.name] = ast.dump(child)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


def parse_source(source: str, path: str) -> ast.AST | None:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError:
        return None  # a file that does not parse cannot run; the smoke test reports it


def check_sources(path: str, old: str | None, new: str | None, settings: CodeModSettings) -> None:
    """Pass 2 for one file (old None: new file; new None: deleted); raises GuardError."""
    if new is None:
        return
    new_tree = parse_source(new, path)
    if new_tree is None:
        return
    old_tree = parse_source(old, path) if old is not None else None
    old_tree = old_tree if old_tree is not None else ast.parse("")
    old_imports = _imports(old_tree, path)
    for mod, count in _imports(new_tree, path).items():
        if count > old_imports[mod]:
            why = import_reason(mod, settings)
            if why:
                raise GuardError(f"{path}: {why}")
    if _timing_statements(new_tree) != _timing_statements(old_tree):
        raise GuardError(f"{path}: the change alters how the run's training time is measured (train_seconds)")
    protected = PROTECTED_FUNCTIONS.get(path, ())
    if protected:
        before, after = _functions(old_tree), _functions(new_tree)
        for fn in protected:
            if before.get(fn) != after.get(fn):
                raise GuardError(f"{path}: the change alters {fn}, part of the evaluation path (predictions and "
                                 f"the run's timing are measured through it)")
    old_names, new_names = _names(old_tree), _names(new_tree)
    for name in sorted(new_names):
        if new_names[name] <= old_names[name]:
            continue
        if name in FORBIDDEN_NAMES:
            raise GuardError(f"{path}: the change adds a use of '{name}' (file, process, network, dynamic-code or "
                             f"ground-truth access, or the run's timing, is not allowed in code modifications)")
        if name.startswith("__") and name.endswith("__") and name not in SAFE_DUNDERS:
            raise GuardError(f"{path}: the change adds a use of '{name}' (introspection is not allowed in code "
                             f"modifications)")
    old_str, new_str = _strings(old_tree), _strings(new_tree)
    for s, count in new_str.items():
        if count > old_str[s] and (s in FORBIDDEN_NAMES or (s.startswith("__") and s.endswith("__"))
                                   or any(s == m or s.startswith(m + ".") for m in FORBIDDEN_IMPORTS)):
            raise GuardError(f"{path}: the change adds the string {s!r} (a forbidden name as a string)")
    if _dynamic_attr_calls(new_tree) > _dynamic_attr_calls(old_tree):
        raise GuardError(f"{path}: the change adds getattr/setattr/hasattr with a computed or private attribute "
                         f"name")


def changed_lines(patches: Iterable[FilePatch]) -> tuple[int, int]:
    """(+added, -removed) over all patches."""
    pl = list(patches)
    return sum(p.n_added for p in pl), sum(p.n_removed for p in pl)
