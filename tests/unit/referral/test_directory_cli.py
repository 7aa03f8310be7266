"""`carebridge directory import` before it talks to a server: its help lists the CSV columns, and
files it cannot use or a gateway it cannot reach exit 2 with a message that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import cli
from shared.devstack import free_port

HEADER = "service_id,service_name,organization_id,organization_name,categories\n"


def test_the_help_lists_the_csv_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["directory", "import", "--help"])
    out = capsys.readouterr().out
    assert "service_id" in out and "referral_methods" in out and "--gateway" in out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "No such file"),
        ("bad.json", "{not json", "not JSON"),
        ("patients.json", '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
         '{"resourceType": "Patient"}}]}', "Patient is not a directory resource"),
        ("rows.csv", f"{HEADER}S1,P,O1,Aid,hunger\n", "CSV line 2: category 'hunger'"),
    ],
)  # fmt: skip
def test_a_file_that_cannot_be_imported_exits_2_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert cli.main(["directory", "import", str(path), "--token", "t"]) == cli.EXIT_ERROR
    assert message in capsys.readouterr().err


def test_an_unreachable_gateway_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.csv"
    path.write_text(
        "service_id,service_name,organization_id,organization_name,categories\nS1,P,O1,Aid,stress\n"
    )
    gateway = f"http://127.0.0.1:{free_port()}"
    assert (
        cli.main(["directory", "import", str(path), "--gateway", gateway, "--token", "t"]) == cli.EXIT_ERROR
    )
    assert f"cannot reach the gateway at {gateway}" in capsys.readouterr().err
