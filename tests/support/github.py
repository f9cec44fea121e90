"""A stand-in for GitHub's CLI (`gh`) as deploy.yml's steps call it: `gh api` listing a repository's
artifacts (GitHub's REST answer, filtered by `--jq` with jq itself, as gh does) and `gh run download`,
over artifacts kept in a local folder. Like gh, it needs GH_TOKEN and GH_REPO, and refuses what it does
not know. `python -m tests.support.github ARGS` is the command; `GitHubStub.bin` the folder to put first
on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.callbacks import ROOT

REPOSITORY_ID, FORK_ID = 1001, 2002


class GitHubStub:
    """A repository's artifacts: each a folder of files, kept under `root`, as upload-artifact keeps them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        gh = self.bin / "gh"
        gh.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m tests.support.github "$@"\n')
        gh.chmod(0o755)
        self._index().write_text("[]")

    def upload(
        self,
        run_id: int,
        name: str,
        folder: Path,
        created_at: str,
        expired: bool = False,
        *,
        fork: bool = False,
        path: str = ".github/workflows/deploy.yml",
        event: str = "push",
        head_branch: str = "v1.0.0",
    ) -> None:
        """What actions/upload-artifact does at the end of a run: the folder's files, kept as `name`.
        The run is of the workflow at `path`, started by `event` on `head_branch` (a tag's name, for a
        tag's push); `fork`: a pull request's from a fork, which runs in this repository with the
        fork's own workflow (its artifacts are listed here too)."""
        shutil.copytree(folder, self.root / "runs" / str(run_id) / name)
        artifacts = json.loads(self._index().read_text())
        artifacts.append(
            {
                "id": len(artifacts) + 1,
                "name": name,
                "expired": expired,
                "created_at": created_at,
                "workflow_run": {
                    "id": run_id,
                    "repository_id": REPOSITORY_ID,
                    "head_repository_id": FORK_ID if fork else REPOSITORY_ID,
                },
            }
        )
        self._index().write_text(json.dumps(artifacts))
        runs = json.loads(self._runs().read_text()) if self._runs().exists() else {}
        runs[str(run_id)] = {
            "id": run_id,
            "path": path,
            "event": event,
            "head_branch": head_branch,
            "repository": {"id": REPOSITORY_ID},
        }
        self._runs().write_text(json.dumps(runs))

    def env(self) -> dict[str, str]:
        """What the step's environment holds for gh: the stand-in first on PATH, its state, a repository."""
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return {"PATH": path, "GITHUB_STUB_ROOT": str(self.root), "GH_REPO": "owner/relay", "GH_TOKEN": "ghs_local"}

    def _index(self) -> Path:
        return self.root / "artifacts.json"

    def _runs(self) -> Path:
        return self.root / "runs.json"


def main(argv: list[str]) -> int:
    if not os.environ.get("GH_TOKEN"):
        print("gh: set the GH_TOKEN environment variable", file=sys.stderr)
        return 4
    root = Path(os.environ["GITHUB_STUB_ROOT"])
    artifacts: list[dict[str, Any]] = json.loads((root / "artifacts.json").read_text())
    if argv[:1] == ["api"] and len(argv) == 4 and argv[2] == "--jq":
        url = urlsplit(argv[1])
        runs_path = f"repos/{os.environ['GH_REPO']}/actions/runs/"
        if url.path.startswith(runs_path):  # one workflow run, as GitHub's REST answer has it
            runs = json.loads((root / "runs.json").read_text()) if (root / "runs.json").exists() else {}
            found_run = runs.get(url.path.removeprefix(runs_path))
            if found_run is None:
                print(f"gh: HTTP 404: Not Found ({argv[1]})", file=sys.stderr)
                return 1
            return subprocess.run(["jq", "-r", argv[3]], input=json.dumps(found_run), text=True, check=False).returncode
        if url.path != f"repos/{os.environ['GH_REPO']}/actions/artifacts":
            print(f"gh: HTTP 404: Not Found ({argv[1]})", file=sys.stderr)
            return 1
        name = parse_qs(url.query).get("name", [None])[0]
        found = [a for a in reversed(artifacts) if name is None or a["name"] == name]  # newest first
        answer = json.dumps({"total_count": len(found), "artifacts": found})
        return subprocess.run(["jq", "-r", argv[3]], input=answer, text=True, check=False).returncode
    if argv[:2] == ["run", "download"] and len(argv) == 7 and argv[3] == "--name" and argv[5] == "--dir":
        kept = root / "runs" / argv[2] / argv[4]
        if not kept.is_dir():
            print("no valid artifacts found to download", file=sys.stderr)
            return 1
        shutil.copytree(kept, argv[6], dirs_exist_ok=True)
        return 0
    print(f"gh stand-in: not a command it knows: {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
