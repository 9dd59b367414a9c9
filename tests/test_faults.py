"""Faults a user meets: damaged cached stages, full disks, read-only folders, missing sources, left-over locks.

Each ends in a redo or in ``rlop: error:`` with exit 2: never a traceback, never a half-written output."""

import errno
import json
import pathlib

import pytest

from rlop.cli import main

SFT_ONLY = ["run", "--preset", "tiny", "--methods", "sft", "--eval-prompts", "2"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "run"
    assert main([*SFT_ONLY, "--out", str(out)]) == 0
    return out


def _rerun(out, capsys):
    capsys.readouterr()
    code = main([*SFT_ONLY, "--out", str(out)])
    return code, capsys.readouterr()


def test_a_finished_output_keeps_no_lock_file(sft_run):
    assert not (sft_run / ".rlop.lock").exists() and not (sft_run / "sft" / ".rlop.lock").exists()
    assert "model.safetensors" in json.loads((sft_run / "sft" / "stage.json").read_text())["files"]


@pytest.mark.parametrize("damage", ["truncate", "flip a bit"])
def test_a_damaged_cached_stage_is_redone(sft_run, capsys, damage):
    weights = sft_run / "sft" / "model.safetensors"
    good = weights.read_bytes()
    code, io = _rerun(sft_run, capsys)
    assert code == 0 and "sft: cached" in io.out  # untouched: reused
    if damage == "truncate":
        weights.write_bytes(good[:1000])
    else:
        data = bytearray(good)
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    code, io = _rerun(sft_run, capsys)
    assert code == 0, io.err
    assert "sft: its files changed since it was written" in io.out and "redoing it" in io.out
    assert weights.read_bytes() == good  # the same stage, computed again (deterministic on one CPU)


def test_weights_that_cannot_be_loaded_end_in_a_clear_error(sft_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sft_run / "sft", broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:1000])
    code = main(["reward", "--preset", "tiny", "--model", str(broken), "--out", str(tmp_path / "rm")])
    err = capsys.readouterr().err
    assert code == 2 and "rlop: error:" in err and "damaged or incomplete" in err and "Traceback" not in err
    assert not (tmp_path / "rm").exists()


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EROFS])
def test_a_failed_write_is_an_error_naming_the_path_and_leaves_nothing(tmp_path, capsys, monkeypatch, fault):
    original = pathlib.Path.write_text

    def failing(self, *a, **kw):
        if self.name == "rlop_config.json":  # after SFT trained, as it writes its record
            raise OSError(fault, "No space left on device" if fault == errno.ENOSPC else "Read-only file system", str(self))
        return original(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "write_text", failing)
    out = tmp_path / "out"
    code = main(["sft", "--preset", "tiny", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "rlop: error: cannot write" in err and str(out) in err, err
    assert ("MiB free there" in err) == (fault == errno.ENOSPC)
    assert not out.exists()  # nothing half-written


def test_a_missing_source_stops_before_the_output_folder_is_claimed(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--preset", "tiny", "--eval-file", str(tmp_path / "nope.jsonl"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "nope.jsonl: not found (--eval-file)" in err
    assert not out.exists()
