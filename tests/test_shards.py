"""WebDataset shards: packed once, streamed in training; a shard-streamed run and a folder run see the same images
(needs radsight[train])."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch", reason="needs radsight[train]")
pytest.importorskip("webdataset", reason="needs radsight[train]")

from radsight.cli import app  # noqa: E402
from radsight.data.manifest import read_manifest  # noqa: E402
from radsight.train.data import load_split  # noqa: E402
from radsight.train.distributed import Ranks  # noqa: E402
from radsight.train.loop import TrainConfig  # noqa: E402
from radsight.train.shards import ShardStream, read_split  # noqa: E402

from conftest import torchrun_train  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def shards(tiny_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    result = runner.invoke(app, ["data", "pack", "--manifest", str(tiny_set / "manifest.csv"), "--images",
                                 str(tiny_set / "images"), "--out", str(out), "--shard-size", "5"])
    assert result.exit_code == 0, result.output
    assert "train: 18 samples in 4 shards (0 skipped)" in result.output and "val: 6 samples in 2 shards" in result.output
    return out


def _folder_split(tiny_set, split):
    cfg = TrainConfig(manifest=str(tiny_set / "manifest.csv"), images=str(tiny_set / "images"), out="unused")
    x, y, _ = load_split(read_manifest(tiny_set / "manifest.csv", tiny_set / "images").select(split),
                         cfg.input_builder("test"))
    return x, y


def test_one_process_streams_every_training_image_once_an_epoch_as_the_folder_reads_it(shards, tiny_set):
    x_folder, y_folder = _folder_split(tiny_set, "train")
    stream = ShardStream(shards, "train", buffer=4)
    for epoch in (0, 1):
        batches = list(stream.epoch(epoch, 0, Ranks(), 8))
        assert [len(x) for x, _ in batches] == [8, 8, 2]
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        # the same 18 images and targets, in another order
        order = [int(torch.argmin((x_folder - xi).abs().flatten(1).amax(1))) for xi in x]
        assert sorted(order) == list(range(18))
        torch.testing.assert_close(x, x_folder[order], rtol=0, atol=1 / 65535)
        torch.testing.assert_close(y, y_folder[order], equal_nan=True)
    first, second = ([b[0] for b in stream.epoch(e, 0, Ranks(), 8)] for e in (0, 1))
    assert not torch.equal(first[0], second[0])  # reshuffled each epoch
    x_val, y_val = read_split(shards, "val")
    x_fv, y_fv = _folder_split(tiny_set, "val")
    torch.testing.assert_close(x_val, x_fv, rtol=0, atol=1 / 65535)
    torch.testing.assert_close(y_val, y_fv, equal_nan=True)


def test_ranks_take_their_own_shards_and_the_same_number_of_steps(shards):
    stream = ShardStream(shards, "train", buffer=4)
    seen = []
    for rank in (0, 1):
        batches = list(stream.epoch(0, 0, Ranks(rank, 2), 8))
        assert [len(x) for x, _ in batches] == [4, 4, 1]
        seen.append({tuple(x.flatten()[:16].tolist()) for b, _ in batches for x in b})
    # 18 samples in shards of 5, 5, 5 and 3, two shards a rank, 9 samples a rank: at most one sample is seen by
    # both (a rank whose shards run out starts over)
    assert len(seen[0] | seen[1]) >= 17


def test_training_streams_from_shards_and_refuses_shards_packed_for_another_input(shards, tiny_set, tmp_path):
    result = runner.invoke(app, ["train", "--shards", str(shards), "--out", str(tmp_path / "run"), "--epochs", "2",
                                 "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "train 18 images streamed from 4 shards, val 6" in result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])
    other = runner.invoke(app, ["train", "--shards", str(shards), "--out", str(tmp_path / "o"), "--input-size", "32"])
    assert other.exit_code == 2 and "pack again with these options" in other.output
    both = runner.invoke(app, ["train", "--shards", str(shards), "--manifest", str(tiny_set / "manifest.csv"),
                               "--images", str(tiny_set / "images"), "--out", str(tmp_path / "b")])
    assert both.exit_code == 2 and "or --shards" in both.output


def test_two_processes_stream_their_shards_under_torchrun(shards, tmp_path):
    two = torchrun_train(2, "--shards", str(shards), "--out", str(tmp_path / "ddp"), "--epochs", "2", "--batch-size", "8",
                    "--threads", "1")
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert "2 processes" in two.stdout and two.stdout.count("best checkpoint:") == 1
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["round"] == 1
