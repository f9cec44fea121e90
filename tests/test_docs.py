"""The README's settings table names every environment variable the code reads, and no link in the
README or docs/ points at a file or heading that is not there."""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import config
from tests.support.callbacks import ROOT

NAME = re.compile(r"^_*[A-Z][A-Z0-9_]*[A-Z0-9]$")
# Read by the code, set by the platform: not a setting for anyone to give.
PLATFORM = {
    "AWS_LAMBDA_FUNCTION_NAME": "set by AWS Lambda; logs.py only asks whether it runs there",
}


def project_files(*suffixes: str) -> list[Path]:
    """The project's own files under git (not .venv or node_modules); tests and benchmarks set, not read, settings."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / line for line in listed.splitlines() if not line.startswith(("tests/", "bench/"))]
    return [path for path in paths if path.name.endswith(suffixes) or path.name in suffixes]


class Reads:
    """Environment variables read by Python source: `environ.get("X")`, `environ["X"]`, `getenv("X")`,
    `helper(environ, "X")`, and a key that is a parameter, a loop variable or a local, followed back to
    the strings it comes from (call sites, the loop's iterable, module-level tuples such as
    config.VARIABLES)."""

    def __init__(self, trees: list[ast.Module]) -> None:
        self.trees = trees
        self.constants: dict[str, list[ast.expr]] = {}  # module-level NAME = ..., in any module
        self.functions: dict[str, list[ast.FunctionDef]] = {}
        self.calls: dict[str, list[tuple[ast.Call, ast.AST]]] = {}  # by callee name, with the caller
        self.found: set[str] = set()
        for tree in self.trees:
            for node in tree.body:
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            self.constants.setdefault(target.id, []).append(node.value)
            for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]:
                if isinstance(scope, ast.FunctionDef):
                    self.functions.setdefault(scope.name, []).append(scope)
                for node in self._own_nodes(scope):
                    if isinstance(node, ast.Call):
                        callee = (
                            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                        )
                        self.calls.setdefault(callee, []).append((node, scope))
        for tree in self.trees:
            for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]:
                for node in self._own_nodes(scope):
                    for key in self._keys(node):
                        self.found |= self.strings(key, scope, depth=0)

    @staticmethod
    def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
        """The nodes of a module or function, not those of the functions inside it."""
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(node, ast.FunctionDef):
                stack.extend(ast.iter_child_nodes(node))

    @staticmethod
    def _environ(node: ast.AST) -> bool:
        return re.search(r"\benviron(ment)?\b", ast.unparse(node)) is not None

    def _keys(self, node: ast.AST) -> list[ast.expr]:
        if isinstance(node, ast.Subscript) and self._environ(node.value):
            return [node.slice]
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop") and self._environ(func.value):
                return [node.args[0]]
            if ast.unparse(func).endswith("getenv"):
                return [node.args[0]]
            if any(isinstance(a, (ast.Name, ast.Attribute)) and self._environ(a) for a in node.args):
                return [a for a in node.args if isinstance(a, ast.Constant)]
        return []

    def strings(self, expr: ast.AST, scope: ast.AST, depth: int) -> set[str]:
        """The variable names an expression can hold."""
        if depth > 6:
            return set()
        found = {
            n.value
            for n in ast.walk(expr)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and NAME.match(n.value)
        }
        for leaf in ast.walk(expr):
            if isinstance(leaf, ast.Name):
                found |= self._name(leaf.id, scope, depth)
            elif isinstance(leaf, ast.Attribute) and leaf.attr in self.constants:
                for value in self.constants[leaf.attr]:
                    found |= self.strings(value, scope, depth + 1)
        return found

    def _name(self, name: str, scope: ast.AST, depth: int) -> set[str]:
        found: set[str] = set()
        if isinstance(scope, ast.FunctionDef):
            params = [a.arg for a in scope.args.args]
            if name in params:
                index = params.index(name)
                for call, caller in self.calls.get(scope.name, []):
                    given = [k.value for k in call.keywords if k.arg == name]
                    given += call.args[index : index + 1]
                    for value in given:
                        found |= self.strings(value, caller, depth + 1)
                return found
        for node in self._own_nodes(scope):
            if isinstance(node, (ast.For, ast.comprehension)) and name in {
                n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)
            }:
                found |= self.strings(node.iter, scope, depth + 1)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                found |= self.strings(node.value, scope, depth + 1)
        for value in self.constants.get(name, []):
            found |= self.strings(value, scope, depth + 1)
        return found


def read_by_shell() -> set[str]:
    """`$NAME` / `${NAME` in the project's shell scripts, less what a script sets itself."""
    found: set[str] = set()
    for path in project_files(".sh", "run"):
        text = path.read_text()
        own = set(re.findall(r"^\s*(?:export\s+|local\s+)?([A-Za-z_][A-Za-z0-9_]*)=", text, re.M))
        found |= {name for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text) if name not in own}
    return found


def settings_read() -> set[str]:
    trees = [ast.parse(path.read_text(), str(path)) for path in project_files(".py")]
    return (set(config.VARIABLES) | Reads(trees).found | read_by_shell()) - set(PLATFORM)


def settings_table() -> set[str]:
    """The names in the first column of the tables in the README's Settings section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z_][A-Z0-9_]*)`", row)}


def test_the_scan_finds_reads_of_every_shape_the_code_uses() -> None:
    """So that the check below fails when a read goes missing from the table, not when the scan goes blind."""
    found = settings_read()
    for name in (
        "FLASHDUTY_INTEGRATION_KEY",  # config.VARIABLES
        "ROUTES",  # config: _json_object(environ, name, ...) from _routes
        "WORKERS",  # gunicorn.conf.py: _whole("WORKERS", ...) reads os.environ.get(name)
        "HOST",  # gunicorn.conf.py: os.environ.get('HOST', ...) in an f-string
        "_BYTEFAAS_RUNTIME_PORT",
        "DEPLOY_EVENT_RULES",  # deploy/cli.py: os.environ[variable] for a loop over a tuple
        "AWS_SECRET_ACCESS_KEY",  # deploy: {name: os.environ[name] for name in (*VARIABLES, *STORE_CREDENTIALS)}
        "RECONCILE_SECRET_KEY",  # deploy: os.environ[given] for given in RECONCILE_CREDENTIALS
        "VEFAAS_FUNCTION_NAME",
        "FLASHDUTY_APP_KEY",  # reconcile: environ.get(...) on a parameter
        "VOLCENGINE_OPENAPI_ENDPOINT",
        "PYTHON",  # run.sh: ${PYTHON:-python3}
        "PORT",  # samples/post.py: make run's port, read in an f-string
    ):
        assert name in found, name
    # A new read of a shape the scan follows is found without anyone listing it.
    source = "import os\ndef read(name):\n    return os.environ.get(name)\nread('SOME_NEW_SETTING')\n"
    assert Reads([ast.parse(source)]).found == {"SOME_NEW_SETTING"}


def test_the_readme_settings_table_names_every_setting_the_code_reads() -> None:
    missing = settings_read() - settings_table()
    assert not missing, f"read by the code but not in README.md's Settings tables: {sorted(missing)}"


def test_the_readme_settings_table_names_nothing_the_code_does_not_read() -> None:
    stale = settings_table() - settings_read()
    assert not stale, f"in README.md's Settings tables but read by no code: {sorted(stale)}"


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", without_code(markdown), re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return found


def without_code(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def relative_links(page: Path) -> list[str]:
    targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_code(page.read_text()))
    return [target for target in targets if not re.match(r"[a-z]+:", target)]


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def broken_links(pages: list[Path]) -> list[str]:
    broken = []
    for page in pages:
        for link in relative_links(page):
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif anchor and anchor not in anchors(target.read_text()):
                broken.append(f"{page.name}: {link} (no such heading)")
    return broken


def test_every_relative_link_in_the_readme_and_docs_reaches_a_file_and_its_heading() -> None:
    assert len(PAGES) > 5
    broken = broken_links(PAGES)
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    assert anchors("## Draining it: `python -m replay`\n") == {"draining-it-python--m-replay"}
    (tmp_path / "other.md").write_text("# Other\n\n## Permissions\n")
    page = tmp_path / "page.md"
    page.write_text(
        "## Here\n[a](other.md#permissions) [b](#here) [c](https://example.com/x.md)\n"
        "[d](gone.md) [e](other.md#nowhere) [f](#not-here)\n```\n[g](in-code.md)\n```\n"
    )
    assert broken_links([page]) == [
        "page.md: gone.md (no such file)",
        "page.md: other.md#nowhere (no such heading)",
        "page.md: #not-here (no such heading)",
    ]


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in relative_links(ROOT / "README.md")}
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"{page.name} is not linked from README.md"


def test_operations_names_every_entry_point_and_which_server_has_the_limits() -> None:
    tree = ast.parse((ROOT / "main.py").read_text())
    entries = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
    assert {"relay", "handler", "drain", "reconcile"} <= set(entries)
    page = (ROOT / "docs/operations.md").read_text()
    missing = [name for name in entries if f"`main.{name}" not in page]
    assert not missing, f"docs/operations.md leaves out entry points: {missing}"
    # functions-framework's own server lifts the request-line limit and reads no gunicorn.conf.py.
    (offer,) = [line for line in page.split("\n- ") if "functions-framework --target=relay" in line]
    assert "only `run.sh`" in offer, offer
