"""Each benchmark still runs end to end on tiny inputs (a 2-layer random BERT, 130 synthetic messages).

These check that the scripts work and print their tables, not the speed: timings on a tiny model say
nothing. The real measurements are in benchmarks/README.md.
"""
import importlib
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    yield lambda name: importlib.import_module(name)
    sys.path.remove(str(BENCH))


def test_finetune_benchmark_compares_trainer_and_core(bench, tiny_bert, sms_file, capsys):
    assert bench("bench_finetune").main(["--data", str(sms_file), "--model", tiny_bert, "--limit", "0",
                                         "--repeats", "1", "--variants", "trainer,core-bf16"]) == 0
    out = capsys.readouterr().out
    for variant in ("| trainer |", "| core-bf16 |"):
        assert variant in out
    assert "1.00x" in out and "median test F1" in out


def test_frozen_benchmark_finds_the_cache_on_the_second_run(bench, tiny_bert, sms_file, capsys):
    assert bench("bench_frozen").main(["--data", str(sms_file), "--model", tiny_bert, "--limit", "40",
                                       "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| core encode bf16 |" in out and "vs pipeline" in out
    assert "| second (other head) | True |" in out  # the second run used the cached features
    cosine = [line for line in out.splitlines() if line.startswith("| core encode fp32 |")][0]
    assert float(cosine.rstrip(" |").split("|")[-1]) > 0.999  # the same features as the pipeline's


def test_predict_benchmark_reports_batch_ratio_and_latency(bench, tiny_bert, sms_file, capsys):
    assert bench("bench_predict").main(["--data", str(sms_file), "--model", tiny_bert, "--train-limit", "0",
                                        "--limit", "40", "--repeats", "1", "--calls", "3"]) == 0
    out = capsys.readouterr().out
    assert "| Predictor finetune |" in out and "| Predictor frozen |" in out and "p50 ms" in out


def test_memory_and_scaling_benchmarks_run_children(bench, tiny_bert, sms_file, capsys):
    assert bench("bench_memory").main(["--data", str(sms_file), "--model", tiny_bert, "--limit", "0",
                                       "--requests", "8"]) == 0
    out = capsys.readouterr().out
    assert "peak RSS MiB" in out and "| 8 |" in out
    assert bench("bench_scaling").main(["--data", str(sms_file), "--model", tiny_bert, "--limit", "60",
                                        "--factors", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "| 2x | 120 |" in out and "1.00 = linear" in out


def test_seed_sweep_summarises_and_reuses_its_runs(bench, tiny_bert, sms_file, tmp_path, capsys):
    argv = ["--data", str(sms_file), "--model", tiny_bert, "--seeds", "1,2", "--modes", "baseline,frozen",
            "--runs-dir", str(tmp_path / "runs")]
    assert bench("bench_seeds").main(argv) == 0
    out = capsys.readouterr().out
    assert "training 4 runs (0 reused" in out and "| frozen | 2 |" in out and " ± " in out
    assert "validation, defaults" in out and "best loss" in out
    assert bench("bench_seeds").main(argv) == 0  # a second sweep trains nothing: the runs match
    assert "training" not in capsys.readouterr().out
    # another setting is a different run for every seed, compared on the same splits
    assert bench("bench_seeds").main([*argv, "--modes", "frozen", "--set", "head_hidden=16"]) == 0
    out = capsys.readouterr().out
    assert "training 2 runs (0 reused" in out and "validation, head_hidden=16" in out
    # the progress bar's time left, replayed from those runs' histories against the time that was left
    assert bench("bench_eta").main([str(tmp_path / "runs"), "--where", "head_hidden=16"]) == 0
    out = capsys.readouterr().out
    assert out.count("| first shown |") == 3 and "| frozen | 1/2 | 2 |" in out  # 2 runs, each in 3 rows
    # and the encoding's time left, from the one run that encoded (the others read the cached features)
    assert bench("bench_eta").main([str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "| encoding | first shown | 1 |" in out and "| encoding | 50% of the time | 1 |" in out


def test_data_size_sweep_trains_each_size_and_counts_what_fine_tuning_saves(bench, tiny_bert, sms_file, tmp_path,
                                                                            capsys):
    argv = ["--data", str(sms_file), "--model", tiny_bert, "--seeds", "1,2", "--sizes", "30,all",
            "--modes", "frozen,finetune", "--runs-dir", str(tmp_path / "runs")]
    assert bench("bench_data_size").main(argv) == 0
    out = capsys.readouterr().out
    assert "| 30 | 30 | frozen |" in out and "| all | 91 | finetune |" in out  # 91: the whole training split
    # validation first, with each run's steps: 30 messages are 1 batch a pass, and 100 passes make an epoch
    assert re.search(r"\| 30 \| finetune \| 300, 300 \| [\d.]+, [\d.]+ \([\d.]+\) \|", out)
    from core.runs import list_runs
    runs = list_runs(tmp_path / "runs")
    trained_on = {r.id: r.config["data_info"]["splits"]["train"]["rows"] for r in runs}
    assert len(runs) == 8 and sorted(trained_on.values()) == [30] * 4 + [91] * 4

    # each size's per-seed gain is the frozen run's test errors minus the fine-tuned one's
    def errors(mode, seed, rows):
        run = next(r for r in runs if r.mode == mode and r.config["seed"] == seed and trained_on[r.id] == rows)
        (_, fp), (fn, _) = run.metrics["test"]["confusion_matrix"]
        return fp + fn
    gains = [errors("frozen", s, 30) - errors("finetune", s, 30) for s in (1, 2)]
    assert f"| 30 | {gains[0]}, {gains[1]} |" in out
    assert bench("bench_data_size").main(argv) == 0  # a second sweep trains nothing: the runs match
    assert "training" not in capsys.readouterr().out
    # another setting for every run (more epochs for a small sample, say): new runs, on the same samples
    assert bench("bench_data_size").main([*argv, "--modes", "frozen", "--sizes", "30", "--set", "head_hidden=16"]) == 0
    assert "training 2 runs" in capsys.readouterr().out
    changed = [r for r in list_runs(tmp_path / "runs") if r.config.get("head_hidden") == 16]
    assert len(changed) == 2 and {r.config["data_info"]["splits"]["train"]["rows"] for r in changed} == {30}

def test_resume_benchmark_kills_resumes_and_compares(bench, tiny_bert, sms_file, capsys, monkeypatch, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert bench("bench_resume").main(["--data", str(sms_file), "--model", tiny_bert, "--kill-after", "4",
                                       *[f"--set={s}" for s in ("save-state-every=0", "epochs=20", "batch-size=8",
                                                                "evals-per-epoch=1", "min-epoch-steps=0")]]) == 0
    out = capsys.readouterr().out
    assert "| uninterrupted |" in out and "| resumed from step " in out
    assert "same test probabilities: True (largest difference 0.00e+00)" in out
    assert not any(scratch.iterdir())  # its runs are removed afterwards


def test_gpu_check_says_so_without_a_gpu(bench):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run benchmarks/gpu_check.py itself")
    assert bench("gpu_check").main(["--data", "unused"]) == 3


def test_gpu_check_runs_every_step_as_a_dry_run_on_the_cpu(bench, tiny_bert, sms_file, capsys):
    # the CUDA run gets a few minutes of a lent GPU: this catches a bug in the script before it costs them
    assert bench("gpu_check").main(["--data", str(sms_file), "--model", tiny_bert, "--repeats", "1",
                                    "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for row in ("| trainer-bf16 |", "| core-bf16 |", "| core-bf16, validates once |", "| pipeline (batch 32) |",
                "| core encode bf16 |", "| first |", "| second (other head) |",
                "| second, CUDA hidden (head on the CPU) |"):
        assert row in out


def test_variants_benchmark_trains_a_mean_pooled_head_and_pairs_it_with_the_defaults(bench, tiny_bert, sms_file,
                                                                                     tmp_path, capsys):
    from safetensors import safe_open

    import core.train
    default_setup = core.train._setup_finetune
    argv = ["--variant", "mean-pooling", "--data", str(sms_file), "--model", tiny_bert, "--seeds", "1,2",
            "--default-runs-dir", str(tmp_path / "cls"), "--runs-dir", str(tmp_path / "mean")]
    assert bench("bench_variants").main(argv) == 0
    out = capsys.readouterr().out
    assert "| val last loss |" in out and "| test accuracy |" in out and " se |" in out
    assert core.train._setup_finetune is default_setup  # the patch does not outlive the sweep
    for folder, has_pooler in (("cls", True), ("mean", False)):
        runs = [p for p in (tmp_path / folder).iterdir() if (p / "model" / "model.safetensors").is_file()]
        assert len(runs) == 2
        with safe_open(str(runs[0] / "model" / "model.safetensors"), "pt") as weights:
            assert any("pooler" in k for k in weights.keys()) is has_pooler


def test_random_batches_variant_unsorts_training_batches_only_while_open(bench):
    from core.batches import LengthBucketSampler

    lengths = np.random.default_rng(0).permutation(320)  # 320 distinct lengths, 10 batches of 32

    def widest_batch():  # the largest spread of lengths inside one training batch
        return max(np.ptp(lengths[b]) for b in LengthBucketSampler(lengths, 32, shuffle=True, seed=0))

    assert widest_batch() == 31  # bucketed: each batch is 32 neighbouring lengths
    with bench("bench_variants").random_batches():
        assert widest_batch() > 200
    assert widest_batch() == 31


def test_layer_lr_decay_variant_gives_each_depth_its_share_of_the_rate_only_while_open(bench, tiny_bert, sms_file,
                                                                                     tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    import core.train
    from core.config import TrainConfig

    default_adamw = torch.optim.AdamW
    built = []
    real_init = default_adamw.__init__

    def record(self, groups, *args, **kwargs):  # sees the groups the variant hands to the real AdamW
        built.append([(g["lr"], g["weight_decay"], len(g["params"])) for g in groups])
        real_init(self, groups, *args, **kwargs)

    cfg = TrainConfig(mode="finetune", data=str(sms_file), model=tiny_bert, epochs=1, runs_dir=str(tmp_path))
    default_adamw.__init__ = record
    try:
        with bench("bench_variants").layer_lr_decay():
            core.train.train(cfg)
    finally:
        default_adamw.__init__ = real_init
    assert torch.optim.AdamW is default_adamw
    (groups,) = built
    # the tiny BERT has 2 layers: the embeddings at 0.9^3, layer 0 at 0.9^2, layer 1 at 0.9, the top at the peak
    rates = sorted({lr for lr, _, _ in groups})
    assert rates == pytest.approx([5e-5 * 0.9 ** k for k in (3, 2, 1, 0)])
    assert {wd for _, wd, _ in groups} == {0.0, 0.01}
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    assert sum(n for _, _, n in groups) == len(list(model.parameters()))  # every tensor in exactly one group


def test_reference_benchmark_scores_the_grid_and_picks_on_validation(bench, sms_file, capsys):
    assert bench("bench_reference").main(["--data", str(sms_file), "--seeds", "42,1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| char")]
    assert len(rows) == 12 and all(0 <= float(r.split("|")[4]) <= 1 for r in rows)  # the grid, seed 42's accuracy
    assert "| picked on validation |" in out and "picked per seed: 42: " in out and ", 1: " in out
