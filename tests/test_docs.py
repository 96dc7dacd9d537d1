"""Every code sample of the docs runs: each ```python block of docs/*.md and of README.md, in
order, one namespace per page, on the test database; `<!-- test-run -->` bash blocks run too.

A page talks to this test with HTML comments, which GitHub does not show:

- `<!-- test-setup: CODE -->` (CODE may continue on the lines up to `-->`): hidden code run at
  that point of the page, in its namespace: a stand-in for the payment provider, a worker for
  queued samples (`_cleanup.enter_context(running_worker())`, stopped at the end of the page), a
  pause standing for the reader's "later".
- `<!-- test-check: CODE -->`: the same, after a sample: asserts that it did what the text says.
- `<!-- not-run: REASON -->` before a block: skip it. Only for what cannot run (a fragment with
  `...`); keep these rare.
- `<!-- test-run -->` before a ```bash block: run each `python manage.py ...` line of it on the
  test database (as a separate process), expecting exit status 0.

The samples of a page run as the module `docs_samples.<page>`, so their workflows register as
`docs_samples.<page>.<function>` (distinct across pages) and Django tasks are found by their
module path. In its package, `.models` is the demo shop's models and `.workflows`, `.tasks` and
`.views` are the page itself, so that a `shop/views.py` sample's `from .workflows import
checkout` finds the page's `checkout`. On Django 5.2, `django.tasks` is the django-tasks backport
while a page runs. What a page registers (workflows, queues, schedules, signal receivers) is
forgotten after it, so none of it fires in another test.

README.md and pages written by others get the same annotations from EXTERNAL, each naming its
block by a line the block contains; an annotation that no longer matches a block fails the test.
EXTERNAL can also mark a block "xfail": a correct sample that exposes an engine bug. It must then
fail (or the test fails, asking to remove the mark), and the page is reported as xfailed after
all its other blocks ran.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django
import pytest

from django_dbos import DBOS, signals
from django_dbos.engine import registry

from .conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
PYTHON = {"python", "py", "python3"}
DIRECTIVES = ("test-setup", "test-check", "not-run", "test-run")
# The `python manage.py` commands a test-run block may hold: quick ones that end by themselves.
NEVER_RUN = {"rundbosworker", "runserver", "rundemo", "shell", "dbshell"}


@dataclass
class Block:
    """A fenced code block, with what the comments before it say about it."""

    page: str
    line: int  # of its first line of code
    language: str
    code: str
    not_run: str | None = None
    run: bool = False
    xfail: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Hidden:
    """Code from a test-setup or test-check comment."""

    page: str
    line: int
    code: str


@dataclass(frozen=True)
class Note:
    """An annotation for a block of a page that does not carry its own comments.

    `kind` is "setup" (run `text` before the block), "check" (after it), "not-run" or "xfail"
    (`text` is the reason). `block` is a line of the block, which names it.
    """

    kind: str
    block: str
    text: str


@dataclass
class Page:
    path: Path
    items: list[Block | Hidden] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    @property
    def blocks(self) -> list[Block]:
        return [item for item in self.items if isinstance(item, Block)]

    @property
    def python(self) -> list[Block]:
        return [block for block in self.blocks if block.language in PYTHON]

    @property
    def runnable(self) -> bool:
        return any(
            (block.language in PYTHON and not block.not_run) or block.run for block in self.blocks
        )


# Pages whose text is not ours to annotate: README.md (its samples are the docs' first ones), and
# docs/tasks.md and docs/celery.md (owned by the Tasks backend's author).
ORDER = "from testproject.shop.models import Order\norder = Order.objects.create()"
USER = (
    "from django.contrib.auth.models import User\n"
    "user = User.objects.create_user('ada', 'ada@example.com')"
)
EXTERNAL: dict[str, list[Note]] = {
    "README.md": [
        Note("setup", "def mark_paid(order_id: int) -> None:", ORDER),
        Note(
            "check",
            "def mark_paid(order_id: int) -> None:",
            "assert handle.get_result(10) == 'paid'",
        ),
    ],
    "docs/tasks.md": [
        Note("setup", "def send_welcome_email(user_id: int) -> str: ...", USER),
        Note(
            "not-run",
            "order = Order.objects.create(...)",
            "fragment: `Order.objects.create(...)` elides the order's fields",
        ),
    ],
    "docs/celery.md": [
        Note("not-run", "from celery import shared_task", "Celery's side; Celery is not installed"),
        Note(
            "not-run",
            "result = send_welcome_email.get_result(result_id)",
            "fragment: `result_id` stands for the id of a task enqueued elsewhere",
        ),
        Note("not-run", "chain(charge.s(order_id)", "Celery's side; Celery is not installed"),
        Note("setup", "payments = Queue(", ORDER),
        Note("check", "payments = Queue(", "assert handle.get_status().status == 'ENQUEUED'"),
    ],
}


# Reading pages --------------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<language>[\w+-]*)")
COMMENT = re.compile(r"^\s*<!--\s*(?P<name>[\w-]+)\s*:?(?P<rest>.*)$")


def parse(path: Path) -> Page:
    """Split a page into its fenced blocks and hidden code, applying its comments."""
    page = Page(path)
    lines = path.read_text().splitlines()
    pending: dict[str, Any] = {}
    number = 0
    while number < len(lines):
        line = lines[number]
        comment = COMMENT.match(line)
        if comment and comment["name"] in DIRECTIVES:
            name, start = comment["name"], number
            text = [comment["rest"]]
            while "-->" not in text[-1]:
                number += 1
                if number == len(lines):
                    raise ValueError(f"{page.name}:{start + 1}: <!-- {name} is never closed.")
                text.append(lines[number])
            text[-1] = text[-1].split("-->")[0]
            body = textwrap.dedent("\n".join(text[1:])) if not text[0].strip() else None
            if name in ("test-setup", "test-check"):
                code = body if body is not None else "\n".join(t.strip() for t in text)
                first = start + 2 if body is not None else start + 1
                page.items.append(Hidden(page.name, first, code))
            elif name == "not-run":
                reason = " ".join(t.strip() for t in text).strip()
                if not reason:
                    raise ValueError(f"{page.name}:{start + 1}: a not-run needs its reason.")
                pending["not_run"] = reason
            else:
                pending["run"] = True
            number += 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, marker = len(fence["indent"]), fence["fence"]
            start = number + 1
            number += 1
            while number < len(lines) and not lines[number].strip().startswith(marker):
                number += 1
            code = "\n".join(text[indent:] for text in lines[start:number])
            block = Block(page.name, start + 1, fence["language"].lower(), code, **pending)
            if block.run and block.language not in ("bash", "sh", "shell", "console"):
                raise ValueError(f"{block.where}: test-run is for bash blocks.")
            page.items.append(block)
            pending = {}
        elif pending and line.strip():
            raise ValueError(
                f"{page.name}:{number + 1}: a not-run or test-run comment must come right before "
                "a fenced block."
            )
        number += 1
    _apply_external(page)
    return page


def _apply_external(page: Page) -> None:
    for note in EXTERNAL.get(page.name, []):
        matches = [block for block in page.blocks if note.block in block.code]
        if len(matches) != 1:
            raise ValueError(
                f"{page.name}: the {note.kind} note for the block containing {note.block!r} "
                f"matches {len(matches)} blocks; update EXTERNAL in tests/test_docs.py."
            )
        block = matches[0]
        if note.kind == "not-run":
            block.not_run = note.text
        elif note.kind == "xfail":
            block.xfail = note.text
        else:
            position = next(i for i, item in enumerate(page.items) if item is block)
            position += note.kind == "check"
            page.items.insert(position, Hidden(page.name, block.line, note.text))


# Running pages --------------------------------------------------------------------------------


def _compile(code: str, page: str, line: int, hidden: bool) -> types.CodeType:
    """Compile with the page's line numbers, so a traceback points into the Markdown."""
    filename = f"{page} (hidden test code)" if hidden else page
    return compile("\n" * (line - 1) + code, filename, "exec")


@contextlib.contextmanager
def page_module(page: Page) -> Iterator[types.ModuleType]:
    """A module for the page's samples, importable while the page runs.

    It is `docs_samples.<page>`, in a package where `.models` is the demo shop's models and
    `.workflows`, `.tasks` and `.views` are the page itself: a page's samples form one app.
    """
    from testproject.shop import models

    slug = re.sub(r"\W", "_", page.path.stem)
    module = types.ModuleType(f"docs_samples.{slug}", f"The code samples of {page.name}.")
    module.__package__ = "docs_samples"
    module.__file__ = str(page.path)
    package = types.ModuleType("docs_samples")
    package.__path__ = []  # a package, so that its modules can be imported by path
    modules = {"docs_samples": package, module.__name__: module, "docs_samples.models": models}
    modules.update({f"docs_samples.{name}": module for name in ("workflows", "tasks", "views")})
    modules[module.__name__] = module
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield module
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


@contextlib.contextmanager
def django_tasks_as_django_tasks() -> Iterator[None]:
    """Django 5.2: let the Django 6 spelling `from django.tasks import task` import the backport."""
    if django.VERSION >= (6, 0) or "django.tasks" in sys.modules:
        yield
        return
    if importlib.util.find_spec("django_tasks") is None:
        yield
        return
    import django_tasks

    sys.modules["django.tasks"] = django_tasks
    try:
        yield
    finally:
        sys.modules.pop("django.tasks", None)


@pytest.fixture
def forget_registrations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a page registers is dropped after it: no schedule of a page fires elsewhere."""
    for name in ("_registered", "_queues", "_schedules"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    for signal in (signals.workflow_started, signals.workflow_finished):
        monkeypatch.setattr(signal, "receivers", list(signal.receivers))
        signal.sender_receivers_cache.clear()


def run_commands(block: Block) -> None:
    """Run the `python manage.py ...` lines of a bash block on the test database."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": str(ROOT),
    }
    for offset, line in enumerate(block.code.splitlines()):
        args = shlex.split(line, comments=True)
        if not args:
            continue
        where = f"{block.page}:{block.line + offset}"
        if args[:2] != ["python", "manage.py"] or len(args) < 3 or args[2] in NEVER_RUN:
            pytest.fail(f"{where}: a test-run block may hold only quick `python manage.py` lines.")
        done = subprocess.run(
            [sys.executable, "manage.py", *args[2:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{where}: {line!r} failed:\n{done.stdout}\n{done.stderr}"


def run_page(page: Page) -> None:
    xfailed: list[str] = []
    with (
        page_module(page) as module,
        django_tasks_as_django_tasks(),
        contextlib.ExitStack() as cleanup,
    ):
        namespace = module.__dict__
        namespace["_cleanup"] = cleanup
        try:
            for item in page.items:
                if isinstance(item, Hidden):
                    exec(_compile(item.code, item.page, item.line, hidden=True), namespace)
                elif item.run:
                    run_commands(item)
                elif item.language not in PYTHON or item.not_run:
                    continue
                elif item.xfail:
                    try:
                        exec(_compile(item.code, item.page, item.line, hidden=False), namespace)
                    except Exception as exc:
                        xfailed.append(f"{item.where}: {item.xfail} ({type(exc).__name__}: {exc})")
                        continue
                    pytest.fail(f"{item.where} passed, but is marked xfail: {item.xfail}")
                else:
                    exec(_compile(item.code, item.page, item.line, hidden=False), namespace)
        finally:
            cleanup.close()  # workers first, then the workflows this process still runs
            DBOS.shutdown(timeout_seconds=10)
    if xfailed:
        pytest.xfail("; ".join(xfailed))


RUNNABLE_PAGES = [path for path in PAGES if parse(path).runnable]


@pytest.mark.parametrize("path", RUNNABLE_PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_page_samples_run(path: Path, forget_registrations: None) -> None:
    run_page(parse(path))


# The docs as a whole --------------------------------------------------------------------------


def test_samples_not_run_are_few_and_explained() -> None:
    python = [block for path in PAGES for block in parse(path).python]
    skipped = [block for block in python if block.not_run]
    assert all(len(block.not_run or "") >= 20 for block in skipped), [b.where for b in skipped]
    assert len(skipped) <= len(python) // 10, "\n".join(
        f"{block.where}: {block.not_run}" for block in skipped
    )


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings (outside code blocks)."""
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_relative_links_lead_to_files_and_headings() -> None:
    broken = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for link in LINK.finditer(line):
                target, _, anchor = link["target"].partition("#")
                if re.match(r"^[a-z]+:", target):
                    continue
                path = (page.parent / target) if target else page
                if not path.exists():
                    broken.append(f"{page.relative_to(ROOT)}:{number}: {target}")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    broken.append(f"{page.relative_to(ROOT)}:{number}: {link['target']}")
    assert not broken, "\n".join(broken)


def test_the_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    linked = {Path(link["target"].split("#")[0]).name for link in LINK.finditer(index)}
    pages = [
        page.name
        for page in DOCS.glob("*.md")
        if page.name != "index.md" and "This page moved" not in page.read_text()
    ]
    assert not [name for name in pages if name not in linked]
