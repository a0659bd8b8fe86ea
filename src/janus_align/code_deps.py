"""`janus dvc-deps`: the code each stage runs, found from its imports, and dvc.yaml's deps beside it.

Why: `dvc status` sees a code change only through a stage's deps, and a stage runs much more than
its own module (the LLM backends, the prompt formats, the records, the helpers they import). A
list kept by hand went stale (no stage listed `llm/`); this module derives it instead. A stage's
code is its module in the stage table (`janus_align.stages`) and every module of the package it
imports, transitively: `import janus_align.x`, `from janus_align.x import y` (y a module or a
name), relative imports, imports inside functions (the lazy ones), and
`importlib.import_module("janus_align.x")` with a literal name. Importing `janus_align.a.b` also
runs the packages' `__init__.py`: those count too, unless they hold nothing that can run (a
docstring, `__all__`, `__version__`). A sub-package whose every module a stage uses is listed as
its folder, which also covers its data files (say, train/accelerate/*.yaml), and keeps dvc.yaml
readable.

Not counted: the CLI and the stage table, which only route `janus <stage>` to the module (a
changed help text must not re-run the pipeline), and non-Python files outside a listed folder.

    janus dvc-deps            # each stage's code deps; exit 1 when dvc.yaml misses one
    janus dvc-deps --write    # rewrite the src/janus_align deps of every stage in dvc.yaml
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
from pathlib import Path

from janus_align.dvc_file import DVC_FILE, dvc_stages
from janus_align.errors import JanusError
from janus_align.stages import STAGES

PACKAGE = "janus_align"
PACKAGE_DIR = Path(__file__).resolve().parent
# Where dvc.yaml (at the project root) finds the package's source.
SOURCE_ROOT = f"src/{PACKAGE}"
_INERT_NAMES = {"__all__", "__version__"}
# They route `janus <stage>` to its module and are not followed (train.launch reads the table too).
ROUTING = frozenset({f"{PACKAGE}.cli", f"{PACKAGE}.stages"})


def module_file(module: str) -> Path | None:
    """The source file of a module of the package (`janus_align.llm` -> llm/__init__.py), or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_package(module: str) -> bool:
    file = module_file(module)
    return file is not None and file.name == "__init__.py"


def _resolve_relative(module: str, level: int, target: str | None) -> str:
    """The absolute name of `from .target import ...` written in `module`."""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


@functools.cache
def direct_imports(module: str) -> frozenset[str]:
    """The package's modules that `module`'s source imports anywhere in it (functions included)."""
    file = module_file(module)
    if file is None:
        return frozenset()
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except SyntaxError as exc:
        raise JanusError(f"{file}:{exc.lineno}: cannot parse ({exc.msg})") from None
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_relative(module, node.level, node.module) if node.level else node.module or ""
            found.add(source)
            # `from janus_align.x import y`: y is a module when such a file exists, else a name in x.
            found.update(f"{source}.{alias.name}" for alias in node.names if module_file(f"{source}.{alias.name}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return frozenset(name for name in found if module_file(name) is not None)


def _with_parents(module: str) -> set[str]:
    """`module` and the packages Python runs first to import it (janus_align, janus_align.x, ...)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imported_modules(module: str) -> set[str]:
    """`module` and every module of the package it imports, transitively."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        for name in _with_parents(current):
            if name not in seen and name not in ROUTING:
                seen.add(name)
                pending.extend(direct_imports(name))
    return seen


def _can_run_code(file: Path) -> bool:
    """False for an `__init__.py` that holds only a docstring, `__all__` and `__version__`."""
    if file.name != "__init__.py":
        return True
    for node in ast.parse(file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and all(
            isinstance(target, ast.Name) and target.id in _INERT_NAMES for target in node.targets
        ):
            continue
        return True
    return False


def _counted_files(folder: Path) -> set[Path]:
    return {file for file in folder.rglob("*.py") if "__pycache__" not in file.parts and _can_run_code(file)}


def _dvc_path(path: Path) -> str:
    relative = path.relative_to(PACKAGE_DIR).as_posix()
    return SOURCE_ROOT if relative == "." else f"{SOURCE_ROOT}/{relative}"


def stage_code_files(module: str) -> set[str]:
    """Every source file (dvc.yaml spelling) whose change can change the output of `module`'s stage."""
    files = {module_file(name) for name in imported_modules(module)}
    return {_dvc_path(file) for file in files if file is not None and _can_run_code(file)}


def stage_code_deps(module: str) -> list[str]:
    """`stage_code_files`, with a sub-package the stage uses whole written as its folder."""
    files = {module_file(name) for name in imported_modules(module)}
    used = {file for file in files if file is not None and _can_run_code(file)}
    folders = sorted({file.parent for file in used if file.parent != PACKAGE_DIR}, key=lambda folder: len(folder.parts))
    deps: set[Path] = set()
    covered: set[Path] = set()
    for folder in folders:
        whole = _counted_files(folder)
        if whole <= used and not any(folder.is_relative_to(done) for done in deps):
            deps.add(folder)
            covered |= whole
    deps |= used - covered
    return sorted(_dvc_path(path) for path in deps)


def stage_modules(dvc_file: Path = DVC_FILE) -> dict[str, str]:
    """{dvc.yaml stage name: the module its `janus <stage>` command runs}, foreach stages included."""
    found = {}
    for name, body in dvc_stages(dvc_file).items():
        words = str(body.get("cmd", "")).split()
        if len(words) >= 2 and words[0] == "janus":
            if words[1] not in STAGES:
                raise JanusError(f"{dvc_file}: stages.{name}.cmd runs `janus {words[1]}`, which is no stage")
            found[name] = STAGES[words[1]].module
    return found


def listed_deps(dvc_file: Path = DVC_FILE) -> dict[str, list[str]]:
    """{stage name: its deps as dvc.yaml lists them} (a foreach stage's template)."""
    return {name: [str(dep) for dep in body.get("deps", [])] for name, body in dvc_stages(dvc_file).items()}


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def missing_code_deps(dvc_file: Path = DVC_FILE) -> dict[str, list[str]]:
    """{stage name: the source files it runs that none of its dvc.yaml deps covers} (stages missing none left out)."""
    listed = listed_deps(dvc_file)
    missing = {}
    for stage, module in stage_modules(dvc_file).items():
        absent = sorted(file for file in stage_code_files(module) if not _covered(file, listed[stage]))
        if absent:
            missing[stage] = absent
    return missing


_STAGE = re.compile(r"^  ([A-Za-z_][\w-]*):\s*(#.*)?$")
_DEPS = re.compile(r"^(\s+)deps:\s*(#.*)?$")


def rewrite_code_deps(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each named stage's `src/janus_align` deps replaced by `deps[stage]`.

    A text edit, not a YAML round trip: comments, order and every other dep stay as they are. The
    generated lines go where the first source dep was (at the top of `deps:` when there was none).
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := _STAGE.match(line):
            stage = match.group(1)
        deps_match = _DEPS.match(line)
        if deps_match is None or stage not in deps:
            out.append(line)
            i += 1
            continue
        out.append(line)
        item = re.compile(rf"^{deps_match.group(1)}  - (\S+)")
        i += 1
        items: list[str] = []
        insert_at = None
        while i < len(lines) and (item.match(lines[i]) or not lines[i].strip()):
            found = item.match(lines[i])
            if found and found.group(1).startswith(SOURCE_ROOT):
                insert_at = len(items) if insert_at is None else insert_at
            else:
                items.append(lines[i])
            i += 1
        trailing_blank: list[str] = []
        while items and not items[-1].strip():
            trailing_blank.insert(0, items.pop())
        generated = [f"{deps_match.group(1)}  - {dep}\n" for dep in deps[stage]]
        at = 0 if insert_at is None else insert_at
        out.extend(items[:at] + generated + items[at:] + trailing_blank)
    return "".join(out)


def main(args: argparse.Namespace) -> None:
    """`janus dvc-deps [--write]`: print (or write into dvc.yaml) each stage's code deps."""
    dvc_file = Path(args.dvc_file)
    modules = stage_modules(dvc_file)
    generated = {stage: stage_code_deps(module) for stage, module in modules.items()}
    if args.write:
        dvc_file.write_text(rewrite_code_deps(dvc_file.read_text(encoding="utf-8"), generated), encoding="utf-8")
        print(f"{dvc_file}: code deps of {len(generated)} stages rewritten")
        return
    for stage, deps in generated.items():
        print(f"{stage}:")
        for dep in deps:
            print(f"  - {dep}")
    missing = missing_code_deps(dvc_file)
    if missing:
        lines = [f"  {stage}: {', '.join(files)}" for stage, files in missing.items()]
        raise JanusError(
            f"{dvc_file}: these stages run code their deps do not list (run `janus dvc-deps --write`):\n"
            + "\n".join(lines)
        )
