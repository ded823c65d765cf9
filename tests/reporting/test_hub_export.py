"""``prmforge export --repo-id``: the Hub layout in a local folder, its card, and `datasets` reading it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from reporting_builds import cli, one_source, two_sources
from typer.testing import CliRunner

from prmforge.pipelines import tables
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.reporting import hub_card
from prmforge.reporting.hub_card import export_hub_folder
from prmforge.reporting.hub_layout import HUB_COLUMNS, folder_digest, hub_features, hub_schema
from prmforge.schemas.errors import BuildStateError

SHARDS = [
    "README.md",
    "data/train-00000-of-00002.parquet",
    "data/train-00001-of-00002.parquet",
    "data/validation-00000-of-00002.parquet",
    "data/validation-00001-of-00002.parquet",
]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _build_rows(root: Path, split: str) -> list[dict[str, Any]]:
    """The build's rows of ``split`` as the Hub has them (every column but ``split``), in order."""
    build = BuildDir(root)
    rows: list[dict[str, Any]] = []
    for f in Manifest.read(root).under(f"data/{split}-"):
        rows += build.read_table(f.entry).select(list(HUB_COLUMNS)).to_pylist()
    return rows


def _front_matter(readme: str) -> dict[str, Any]:
    assert readme.startswith("---\n")
    data: dict[str, Any] = yaml.safe_load(readme[4 : readme.index("\n---\n", 4)])
    return data


def test_the_layout_keeps_the_builds_shards_and_rows(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = two_sources(tmp_path_factory)
    shards = export_hub_folder(root, "org/two", tmp_path / "hub")
    assert _files(tmp_path / "hub") == SHARDS
    assert [s.path for s in shards] == SHARDS[1:]
    for split in ("train", "validation"):
        rows = []
        for s in shards:
            if s.split == split:
                table = pq.read_table(tmp_path / "hub" / s.path)
                assert table.schema.names == list(HUB_COLUMNS)
                assert s.rows == table.num_rows
                rows += table.to_pylist()
        assert rows == _build_rows(root, split)
        assert rows


def test_a_rerun_gives_the_same_bytes_and_replaces_the_folder_atomically(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = two_sources(tmp_path_factory)
    export_hub_folder(root, "org/two", tmp_path / "hub")
    first = folder_digest(tmp_path / "hub")
    export_hub_folder(root, "org/two", tmp_path / "hub")
    assert folder_digest(tmp_path / "hub") == first

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("card failed")

    monkeypatch.setattr(hub_card, "render_hub_card", broken)
    with pytest.raises(RuntimeError, match="card failed"):
        export_hub_folder(root, "org/two", tmp_path / "hub")
    assert folder_digest(tmp_path / "hub") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]  # no staging folder left behind


def test_it_never_replaces_a_folder_it_did_not_write(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(BuildStateError) as err:
        export_hub_folder(two_sources(tmp_path_factory), "org/two", tmp_path / "mine")
    assert str(err.value) == (
        f"{tmp_path / 'mine'}: exists and holds notes.txt, which a Hub export does not write: refusing to "
        "replace it (give an empty or new --output)"
    )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_card_header(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    import datasets

    root = two_sources(tmp_path_factory)
    manifest = Manifest.read(root)
    shards = export_hub_folder(root, "org/two", tmp_path / "hub")
    meta = _front_matter((tmp_path / "hub" / "README.md").read_text(encoding="utf-8"))
    assert meta["license"] == "mit"
    assert meta["task_categories"] == ["token-classification"]
    assert meta["tags"] == [
        "process-reward-model",
        "prm",
        "stepwise-supervision",
        "trl",
        "prmforge",
        "synthetic",
    ]
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*"},
                {"split": "validation", "path": "data/validation-*"},
            ],
        }
    ]
    info = meta["dataset_info"]
    assert (
        info["features"]
        == hub_features()
        == datasets.Features.from_arrow_schema(hub_schema())._to_yaml_list()
    )
    assert [(s["name"], s["num_examples"]) for s in info["splits"]] == [
        ("train", manifest.splits["train"]),
        ("validation", manifest.splits["validation"]),
    ]
    assert info["download_size"] == sum((tmp_path / "hub" / s.path).stat().st_size for s in shards)


def test_the_card_states_policy_sources_licence_and_synthetic_rollouts(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = two_sources(tmp_path_factory)
    manifest = Manifest.read(root)
    export_hub_folder(root, "org/two", tmp_path / "hub")
    card = (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    for line in (
        "> **Synthetic rollouts.** The solutions were written by prmforge's built-in simulated policy",
        "- Trained label: `earliest`: the earliest first error any source claims.",
        "  error are **negative**.",
        "| `equations` | exact check of the equalities each step states (abstains when nothing is "
        "checkable). | exact rational arithmetic | no code executed |",
        "Licence: `mit`, the licence of the third-party input data (generated inputs add no third-party "
        "rights).",
        "| inputs.0 (arith) | 12 multi-step arithmetic word problems generated by prmforge's built-in "
        "`arith` suite (seed-determined) | none (generated by prmforge; no third-party data) | none needed |",
        "### GSM8K licence",
        "Copyright (c) 2021 OpenAI",
        "| source | policy completions | generated tokens | prompt tokens | tool calls |",
        f"- Content hash `{manifest.content_hash}`, config hash `{manifest.config_hash}`.",
    ):
        assert line in card.splitlines(), line
    assert "GSM8K training problems (rows 20 to 31 of `grade_school_math/data/train.jsonl`)" in card
    assert "math-verify" in card  # the outcome grader


def test_a_user_file_leaves_the_licence_open_unless_given(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = one_source(tmp_path_factory)
    export_hub_folder(root, "org/one", tmp_path / "hub")
    card = (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    assert _front_matter(card)["license"] == "other"
    assert "synthetic" not in _front_matter(card)["tags"]
    assert "Synthetic rollouts" not in card  # imported rollouts are not the simulated policy's
    assert (
        "Licence: not determined: inputs.0 (rollouts) is a user-supplied file whose licence prmforge cannot "
        "know; state it with `prmforge export --license`."
    ) in card.splitlines()
    assert "written solutions (rollouts) from the user-supplied file `rollouts.jsonl`" in card
    export_hub_folder(root, "org/one", tmp_path / "hub", licence="cc-by-4.0")
    card = (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    assert _front_matter(card)["license"] == "cc-by-4.0"


@pytest.mark.slow
def test_datasets_reads_it_back_offline(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    root = two_sources(tmp_path_factory)
    export_hub_folder(root, "org/two", tmp_path / "hub")
    script = (
        "import json, sys, datasets\n"
        "d = datasets.load_dataset(sys.argv[1])\n"
        "print(json.dumps({s: d[s].to_list() for s in d}))\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
    }
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "hub")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.splitlines()[-1])
    assert list(loaded) == ["train", "validation"]
    for split, rows in loaded.items():
        assert rows == _build_rows(root, split)
    examples = tables.decode("example", pq.read_table(root / "data" / "train-00000-of-00002.parquet"))
    assert loaded["train"][0]["labels"] == list(examples[0].labels)


def test_the_export_command(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    root = two_sources(tmp_path_factory)
    runner = CliRunner()
    run = runner.invoke(
        cli(), ["export", str(root), "--repo-id", "org/two", "--output", str(tmp_path / "hub")]
    )
    assert run.exit_code == 0, run.output
    rows = sum(Manifest.read(root).splits.values())
    assert " ".join(run.output.split()) == (
        f"wrote the Hub layout of org/two to {tmp_path / 'hub'}: {rows} rows in 4 shard(s)"
    )
    assert _files(tmp_path / "hub") == SHARDS
    for args, message in (
        (["--repo-id", "org/two", "--split", "train"], "error --split: the Hub layout holds every split; "
         "leave --split out with --repo-id"),
        (["--repo-id", "org/two", "--format", "qwen"], "error --format: the Hub layout is TRL stepwise plus "
         "prmforge columns (got 'qwen')"),
        (["--push"], "error --push, --private and --license need --repo-id"),
    ):  # fmt: skip
        run = runner.invoke(cli(), ["export", str(root), "--output", str(tmp_path / "x"), *args])
        assert (run.exit_code, " ".join(run.output.split())) == (2, message)
    run = runner.invoke(
        cli(), ["export", str(root), "--repo-id", "no-slash", "--output", str(tmp_path / "x")]
    )
    assert run.exit_code == 1
    assert " ".join(run.output.split()) == (
        "error --repo-id: 'no-slash' is not ORG/NAME (letters, digits, '-', '_', '.')"
    )


def test_each_input_has_an_origin_and_the_card_a_licence() -> None:
    from prmforge.reporting.licences import card_licence, origin_of
    from prmforge.schemas.config import ArithSuite, Gsm8kSuite, LogicSuite
    from prmforge.schemas.inputs import RolloutsInput

    arith, gsm8k, logic = (
        origin_of(0, ArithSuite()),
        origin_of(1, Gsm8kSuite(limit=5)),
        origin_of(2, LogicSuite()),
    )
    own = origin_of(3, Gsm8kSuite(path=Path("/data/mine.jsonl")))
    bench = origin_of(4, RolloutsInput(path=Path("/data/pb.json"), preset="processbench"))
    assert (gsm8k.licence, gsm8k.third_party, arith.licence, arith.third_party) == (
        "mit", True, "none (generated by prmforge; no third-party data)", False,
    )  # fmt: skip
    assert gsm8k.description == (
        "GSM8K training problems (rows 0 to 4 of `grade_school_math/data/train.jsonl`), solutions replayed "
        "from their calculator annotations"
    )
    assert (own.licence, own.description) == (
        None,
        "problems from the user-supplied file `mine.jsonl` (preset `gsm8k`)",
    )
    assert bench.attribution == (
        "not known to prmforge: credit the file's authors as its licence asks; ProcessBench "
        "(Qwen/ProcessBench), if that is what the file holds, is Apache-2.0"
    )
    assert card_licence([arith, logic], None)[0] == "apache-2.0"
    assert card_licence([arith, gsm8k], None)[0] == "mit"
    assert card_licence([arith, gsm8k, own, bench], None) == (
        "other",
        "not determined: inputs.3 (gsm8k), inputs.4 (rollouts) are user-supplied files whose licences "
        "prmforge cannot know; state it with `prmforge export --license`.",
    )
    assert card_licence([own], "cc-by-4.0") == ("cc-by-4.0", "`cc-by-4.0`, as given with `--license`.")
