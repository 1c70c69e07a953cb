"""TA-postern passes Splunk AppInspect in precert mode (every check, every tag: what Splunk Cloud vetting and
Splunkbase run): no failure, error or future failure, and no warning but the one any app with a Python script gets.

The inherent results are listed below with the reason; any other result that is not a success (or not applicable
to this add-on) fails the test with the check's name and messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

TA = Path(__file__).parents[2] / "mappings" / "splunk" / "TA-postern"
APPINSPECT = Path(sys.executable).parent / "splunk-appinspect"  # the test extra installs it beside pytest
PASSED = {"success", "not_applicable"}

# check name -> (its result, a phrase of its message, why this add-on cannot do otherwise)
INHERENT = {
    "check_for_python_script_existence": (
        "warning", "Python files found",
        "a reminder raised for every app that ships a Python file, whatever the file says: the postern_respond "
        "alert action is bin/postern_respond.py, which is Python 3 (Splunk has run no Python 2 since 9.0)"),
    "check_for_valid_package_id": (
        "skipped", "No `app.manifest` was found",
        "the [package] id and [id] name are checked and pass; only the comparison with an app.manifest is "
        "skipped, and that file is optional (Splunk's packaging toolkit writes it; this add-on is a plain tarball)"),
}


def package(directory: Path, into: Path) -> Path:
    """The add-on as it is installed: a tarball of the tracked files under one TA-postern/ folder."""
    tarball = into / f"{directory.name}.tar.gz"

    def tracked(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in Path(member.name).parts or member.name.endswith(".pyc"):
            return None  # .gitignore'd: a developer's byte-code is no part of the add-on
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        return member

    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(directory, arcname=directory.name, filter=tracked)
    return tarball


def inspect(tarball: Path, report: Path) -> dict:
    # The trusted-libraries list shipped with AppInspect is used as it is (updating it means a download, and
    # the add-on vendors no third-party library for that list to judge).
    done = subprocess.run([str(APPINSPECT), "inspect", str(tarball), "--mode", "precert", "--data-format", "json",
                           "--output-file", str(report), "--max-messages", "all", "--skip-trusted-libraries-update"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(report.read_text())


def test_the_add_on_passes_appinspect_precert_with_no_failure_or_warning(tmp_path: Path) -> None:
    result = inspect(package(TA, tmp_path), tmp_path / "appinspect.json")
    [report] = result["reports"]
    checks = [check for group in report["groups"] for check in group["checks"]]
    assert len(checks) > 200  # the whole precert set ran, not a subset

    unexpected = []
    for check in checks:
        if check["result"] in PASSED:
            continue
        expected, phrase, _why = INHERENT.get(check["name"], (None, None, None))
        messages = [f"{message['result']}: {message['message']}" for message in check["messages"]]
        if check["result"] != expected or not all(phrase in message for message in messages):
            unexpected.append(f"{check['name']} ({check['result']}):\n  " + "\n  ".join(messages))
    assert not unexpected, "AppInspect precert found:\n" + "\n".join(unexpected)

    summary = result["summary"]
    assert summary["failure"] == summary["error"] == summary.get("future_failure", 0) == 0, summary
    assert summary.get("manual_check", 0) == 0, summary
    assert summary["warning"] <= sum(1 for result, _, _ in INHERENT.values() if result == "warning"), summary
