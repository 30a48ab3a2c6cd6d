"""A run as a zip that loads without this project: plain transformers, torch and scikit-learn.

    python -m core export --run checkpoints/<run> --out my-run.zip

The zip holds the run folder (config, history, metrics, status; not evaluations/, the user's own messages, nor the
test messages' texts, this machine's paths and its process, see SHAREABLE) plus what its mode needs to stand alone:
- finetune: model/ is a save_pretrained folder: AutoModelForSequenceClassification.from_pretrained("model").
- frozen: model/encoder/ is the frozen encoder (AutoModel.from_pretrained), beside the MLP head's
  safetensors; no transformers class is "mean pooling + MLP", so README.md shows the dozen lines that join them.
- baseline: model/baseline.skops is the scikit-learn Pipeline, saved with skops (a safe format, not pickle).
README.md in the zip says how to load it, with code that the tests run against the unzipped folder.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

from .runs import CANCEL_FILE, EVALUATIONS, FINISH_FILE, cut_short, read_json, saved_run_config, stopped_note

ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json")

_FINETUNE = '''\
```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("model")
model = AutoModelForSequenceClassification.from_pretrained("model").eval()
texts = ["WINNER!! Claim your free prize now, call 09061701461", "Are we still on for lunch?"]
batch = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="pt")
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled={bf16}):
    spam_probability = model(**batch).logits.float().softmax(-1)[:, 1]
print(spam_probability.tolist())
```'''

_FROZEN = '''\
```python
import json
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("model/encoder")
encoder = AutoModel.from_pretrained("model/encoder").eval()
head_config = json.load(open("model/head_config.json"))
head = torch.nn.Sequential(  # dropout layers (0, 3) are no-ops at inference; kept so the weight names match
    torch.nn.Dropout(), torch.nn.Linear(head_config["in_features"], head_config["hidden"]), torch.nn.GELU(),
    torch.nn.Dropout(), torch.nn.Linear(head_config["hidden"], 2))
head.load_state_dict({{k.removeprefix("net."): v for k, v in load_file("model/head.safetensors").items()}})
head.eval()

texts = ["WINNER!! Claim your free prize now, call 09061701461", "Are we still on for lunch?"]
batch = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="pt")
with torch.inference_mode():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled={bf16}):  # the encoder's precision in training; the head fp32
        hidden = encoder(**batch).last_hidden_state.float()
    {pool}
    spam_probability = head(features).softmax(-1)[:, 1]
print(spam_probability.tolist())
```'''

_POOL = {
    "mean": 'mask = batch["attention_mask"].unsqueeze(-1).float()  # mean over real tokens, not padding\n'
            '    features = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)',
    "cls": "features = hidden[:, 0]  # the [CLS] token's vector",
}

_BASELINE = '''\
```python
import skops.io as sio

pipeline = sio.load("model/baseline.skops")  # a scikit-learn Pipeline: TF-IDF (word + char) -> LogisticRegression
texts = ["WINNER!! Claim your free prize now, call 09061701461", "Are we still on for lunch?"]
print(pipeline.predict_proba(texts)[:, 1].tolist())
```'''


def readme(config: dict, metrics: dict | None) -> str:
    """How to load this run's model, with its test scores; the code is run by the tests."""
    mode = config["mode"]
    bf16 = mode != "baseline" and config.get("precision") == "bf16"  # the linear baseline has no autocast
    if mode == "finetune":
        code, needs = _FINETUNE.format(max_length=config["max_length"], bf16=bf16), "torch, transformers"
    elif mode == "frozen":
        code = _FROZEN.format(max_length=config["max_length"], bf16=bf16, pool=_POOL[config["pooling"]])
        needs = "torch, transformers, safetensors"
    else:
        code, needs = _BASELINE, "scikit-learn, skops"
    model = _names_for_paths(config.get("model") or {}).get("name", "tfidf-logreg")  # a local folder: its name
    lines = [f"# {config.get('run_id', 'run')}: {mode} ({model})", "",
             f"Needs {needs}. Run the code from this folder (the one holding `model/`).", "",
             f"Spam probability at or above {config.get('threshold', 0.5)} means spam "
             f"(the threshold this run was scored at).", "", code, ""]
    if bf16:
        lines += ["The run was trained and tested under bf16 autocast; drop it (`enabled=False`) on a CPU "
                  "without native bf16, and expect probabilities to move in the second or third decimal.", ""]
    if metrics:
        t = metrics["test"]
        lines += ["## Test scores (spam is the positive class)", "",
                  "| accuracy | precision | recall | F1 | AUROC |", "|---|---|---|---|---|",
                  "| " + " | ".join(f"{t[k]:.4f}" if t.get(k) is not None else "-"
                                   for k in ("accuracy", "precision", "recall", "f1", "auroc")) + " |", "",
                  "`metrics.json` holds every metric, curve and test message's label and probability (not its "
                  "text, which stays with whoever trained the run); `config.json` every hyperparameter, and "
                  "`history.jsonl` the training events, both with file names instead of that machine's paths.", ""]
        if metrics.get("stopped"):  # fewer steps than config.json says: whoever loads it should know
            lines += ["This run " + ("did not train to its end: " if cut_short(metrics["stopped"]) else "")
                      + f"{stopped_note(metrics['stopped'])}.", ""]
    return "\n".join(lines)


def export_run(run_dir: str | Path, target) -> None:
    """Write the run at `run_dir` as a zip to `target` (a path or a binary file object)."""
    run_dir = Path(run_dir)
    config = saved_run_config(run_dir)
    mode = config["mode"]
    try:
        metrics = read_json(run_dir / "metrics.json")
    except (OSError, ValueError):
        metrics = None
    root = Path(run_dir.name)

    def add(path: Path, name: Path) -> None:
        # weights stored as they are: deflating float tensors saved 8 % of a fine-tune's zip and took 2.5 s of 2.6
        zf.write(path, name, compress_type=zipfile.ZIP_STORED if path.suffix == ".safetensors" else None)

    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(run_dir.rglob("*")):
            inside = path.relative_to(run_dir)
            # evaluations/ holds every message of the user's own files (Compare, `core evaluate`): a zip made to
            # share a model must not carry them off
            # a temp file or folder a kill left behind (.metrics.json.x1y2.tmp, model.tmp) holds what the cleaned
            # copies leave out, the test messages among it
            if not path.is_file() or path.is_symlink() or path.name in (CANCEL_FILE, FINISH_FILE) \
                    or inside.parts[0] == EVALUATIONS \
                    or any(part.startswith(".") or part.endswith(".tmp") for part in inside.parts):
                continue
            if inside in SHAREABLE:  # the messages and this machine's paths stay here (see SHAREABLE)
                zf.writestr(str(root / inside), json.dumps(SHAREABLE[inside](read_json(path)), indent=1))
            elif inside == Path("history.jsonl"):  # its data and model events name this machine's files too
                zf.writestr(str(root / inside), _history_without_paths(path.read_text(encoding="utf-8")))
            else:
                add(path, root / inside)
        if mode == "frozen":
            from .modeling import reresolve
            head_config = json.loads((run_dir / "model" / "head_config.json").read_text())
            encoder = Path(reresolve(head_config["encoder"]).path)
            for name in ENCODER_FILES:
                if (encoder / name).is_file():
                    add(encoder / name, root / "model" / "encoder" / name)
        elif mode == "baseline":
            import skops.io as sio
            from .baseline import Baseline
            zf.writestr(str(root / "model" / "baseline.skops"), sio.dumps(Baseline.load(run_dir / "model").pipeline))
        zf.writestr(str(root / "README.md"), readme({**config, "run_id": run_dir.name},
                                                    metrics and _names_for_paths(metrics)))


def _without_messages(metrics: dict) -> dict:
    """metrics.json, each test message kept as its label and probability (every metric and curve comes from those)
    but not its text: a run trained on someone's own messages must not hand a fifth of them to whoever gets the zip.
    A model named by its local folder is named by the folder's name."""
    return {**_names_for_paths(metrics), "predictions": [{k: v for k, v in p.items() if k != "text"}
                                                        for p in metrics.get("predictions") or []]}


def _without_paths(config: dict) -> dict:
    """config.json with file names for this machine's paths (the data file, the runs and cache folders, the model's
    folder; the zip carries the model itself)."""
    config = dict(config)
    for key in ("data", "runs_dir", "cache_dir"):
        if config.get(key):
            config[key] = Path(config[key]).name
    for key, path in (("data_info", "source"), ("model", "path")):
        if isinstance(config.get(key), dict) and config[key].get(path):
            config[key] = {**config[key], path: Path(config[key][path]).name}
    # a model named by its local folder (a hub id such as org/name is no path, and stays)
    if isinstance(config.get("requested_model"), str) and Path(config["requested_model"]).is_absolute():
        config["requested_model"] = Path(config["requested_model"]).name
    for key in ("requested", "name"):
        if isinstance(config.get("model"), dict) and Path(str(config["model"].get(key, ""))).is_absolute():
            config["model"] = {**config["model"], key: Path(config["model"][key]).name}
    return config


# absolute paths inside a sentence (an error's text): quoted, as Python's OSError gives them, spaces and all; or
# bare, up to a space. Not a URL's path, whose slashes follow ":" or a name
_QUOTED_PATH = re.compile(r"""(['"])(/(?:(?!\1)[^\n])*)\1""")  # "/home/o'brien/x": the other quote is a letter
_BARE_PATH = re.compile(r"""(?<![\w:/.~-])/(?:[^\s'"/:,]+(?: [^\s'"/:,]+)*/)+[^\s'"/]*""")  # "a b/" a folder


def _names_for_paths(record):
    """A record (dict, list or string, nested) with each absolute path in it, a value's whole (a data file, a
    model's folder) or inside a sentence (an error's text), cut to its file name."""
    if isinstance(record, dict):
        return {k: _names_for_paths(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_names_for_paths(v) for v in record]
    if not isinstance(record, str):
        return record
    path = Path(record)
    # a path, not a sentence: a moved data file's path is one too, spaces and all; ": " or " /" is a sentence's
    if path.is_absolute() and (path.exists() or not re.search(r":\s|\s/|\n", record)):
        return path.name
    record = _QUOTED_PATH.sub(lambda m: m[1] + Path(m[2]).name + m[1], record)
    return _BARE_PATH.sub(lambda m: Path(m[0]).name, record)


def _status_shareable(status: dict) -> dict:
    """status.json without this machine's process (pid, start time, host name) and paths in an error's text."""
    return _names_for_paths({k: v for k, v in status.items() if k not in ("pid", "pid_started", "host")})


def _history_without_paths(text: str) -> str:
    """history.jsonl with file names for this machine's paths: the data event's source, the model event's folder."""
    events = []
    for line in text.split("\n"):  # not splitlines: a U+2028 written raw inside a JSON string is no line end
        try:
            event = json.loads(line)
        except ValueError:  # the empty last line, or one cut short by a kill: nothing to leak
            continue
        events.append(json.dumps(_names_for_paths(event) if isinstance(event, dict) else event) + "\n")
    return "".join(events)


SHAREABLE = {Path("metrics.json"): _without_messages, Path("config.json"): _without_paths,
             Path("status.json"): _status_shareable,
             # a frozen head's encoder is in the zip (model/encoder/), not at this machine's path
             Path("model", "head_config.json"): lambda head: {**head, "encoder": _names_for_paths(head["encoder"])}}


def export_bytes(run_dir: str | Path) -> bytes:
    buffer = io.BytesIO()
    export_run(run_dir, buffer)
    return buffer.getvalue()
