"""`compress deploy` and `compress predict` on a LeNet-5 trained a few epochs on the subset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.errors import InvalidInputError, QualityGateError, UnsupportedError, UsageError
from compress.stages.deploy import MANIFEST, DeployConfig, deploy
from compress.stages.predict import load_deployed, predict
from tests.conftest import FASHION_MINI

FAST = {"seconds": 0.1, "rounds": 2, "warmup": 1, "eval_samples": 200}


@pytest.fixture(scope="module")
def deployed(trained_lenet, tmp_path_factory) -> Path:
    """Deployed on torch or onnxruntime (fp32 and bf16 where the CPU has it), 1 and 2 threads."""
    from compress.models.data.datasets import DataConfig

    out = tmp_path_factory.mktemp("dep") / "lenet5-deployed"
    data = DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_MINI))
    cfg = DeployConfig(runtimes=("torch", "ort-cpu"), threads=(1, 2), batch_sizes=(1, 8), **FAST)
    deploy(str(trained_lenet), out, cfg, data)
    return out


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Six test images written as PNG files (and the uint8 pixels they hold)."""
    from PIL import Image

    from compress.models.data.idx import load_idx_split

    x, _ = load_idx_split("fashion-mnist", str(FASHION_MINI), "test", None)
    folder = tmp_path_factory.mktemp("imgs")
    pixels = np.asarray(x[:6])
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder, pixels


def test_deploy_writes_the_chosen_candidate_and_every_measurement(deployed):
    man = json.loads((deployed / MANIFEST).read_text())
    rows = man["candidates"]
    chosen = [r for r in rows if r["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["runtime"] == man["runtime"]
    assert man["threads"] == chosen[0]["threads"] and man["precision"] == chosen[0]["precision"]
    timed = [r for r in rows if r.get("latency")]
    assert {(r["runtime"], r["threads"]) for r in timed} >= {("torch", 1), ("ort-cpu", 2)}
    fastest = min(timed, key=lambda r: r["latency"]["1"]["p50_ms"])
    assert fastest["status"] == "chosen"  # the first batch size decides
    assert all(set(r["latency"]) == {"1", "8"} for r in timed)
    skipped = {
        (r["runtime"], r["precision"]): r["reason"] for r in rows if r["status"] == "skipped"
    }
    for case in (("ort-cpu", "fp16"), ("torch", "fp16"), ("ort-cpu", "int8"), ("torch", "int8")):
        assert skipped[case]  # refused, with the reason recorded
    spec = man["spec"]
    assert (spec["input_size"], spec["in_channels"], spec["num_classes"]) == (28, 1, 10)
    assert len(man["class_names"]) == 10 and man["environment"]["cpu"]
    assert man["gate"]["reference_top1"] > 0.3  # the card's recorded validation top-1
    sp = man["speedup"]  # no --baseline: the choice's p50, no speed-ups claimed
    assert sp["p50_ms"] == chosen[0]["latency"]["1"]["p50_ms"] and sp["vs_ort_fp32"] is None
    form = "model.onnx" if man["runtime"].startswith("ort") else "model.safetensors"
    assert (deployed / form).is_file() and (deployed / "card.json").is_file()


def test_predict_agrees_with_the_models_own_logits(deployed, pngs, trained_lenet):
    from compress.models.artifacts.artifact import load_model
    from compress.models.data.images import TensorImages

    folder, pixels = pngs
    preds = predict(deployed, [folder])
    assert [Path(p.image).name for p in preds] == [f"img{i}.png" for i in range(6)]
    model, card = load_model(trained_lenet)
    # the training transform applied to the same pixels, through the PyTorch model
    x, _ = TensorImages(pixels, np.zeros(6), card.model_spec)[list(range(6))]
    with torch.no_grad():
        probs = torch.softmax(model(x), 1).numpy()
    names = card.class_names
    for p, ref in zip(preds, probs, strict=True):
        assert p.label == int(ref.argmax()) and p.name == names[p.label]
        assert p.probability == pytest.approx(float(ref.max()), abs=1e-4)
        assert 0 < p.probability <= 1 and len(p.top) == 3
        assert p.top[0][1] >= p.top[1][1] >= p.top[2][1]


def test_deploy_on_torch_only_runs_from_the_pytorch_files(trained_lenet, tmp_path, pngs, mini_data):
    out = tmp_path / "torch-deployed"
    r = deploy(
        str(trained_lenet),
        out,
        DeployConfig(runtimes=("torch",), precisions=("fp32",), threads=(1,), **FAST),
        mini_data,
    )
    assert r.chosen.case.runtime == "torch" and (out / "model.safetensors").is_file()
    assert not (out / "model.onnx").exists()
    d = load_deployed(out)
    assert d.cand.runtime == "torch"
    onnx_preds = predict(d, [pngs[0] / "img0.png"])
    assert onnx_preds[0].name in d.class_names


def test_every_candidate_below_the_gate_exits_5_and_writes_nothing(trained_lenet, tmp_path):
    art = tmp_path / "overrated"
    shutil.copytree(trained_lenet, art)
    card = json.loads((art / "card.json").read_text())
    card["metrics"]["val"]["top1"] = 1.0  # a recorded accuracy nothing here reaches
    (art / "card.json").write_text(json.dumps(card))
    out = tmp_path / "never"
    args = ["deploy", "-m", str(art), "-o", str(out), "-r", "ort-cpu", "--precision", "fp32"]
    args += ["--threads", "1", "--max-drop", "0", "--data-dir", str(FASHION_MINI)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 5, res.output
    assert "no candidate passed the accuracy gate" in res.output and "below gate" in res.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]
    with pytest.raises(QualityGateError, match="accuracy gate"):
        deploy(str(art), out, DeployConfig(runtimes=("torch",), max_drop=0, **FAST))


def test_bad_images_and_directories_are_clear_errors(deployed, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    with pytest.raises(InvalidInputError, match="cannot read image"):
        predict(deployed, [bad])
    with pytest.raises(InvalidInputError, match="not found"):
        predict(deployed, [tmp_path / "missing.jpg"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="no images"):
        predict(deployed, [empty])
    res = CliRunner().invoke(app, ["predict", "-m", str(deployed), str(bad)])
    assert res.exit_code == 3 and "cannot read image" in res.output
    res = CliRunner().invoke(app, ["predict", "-m", str(tmp_path), str(bad)])
    assert res.exit_code == 3 and "not a deployed directory" in res.output


def test_predict_cli_writes_json_to_a_file_or_stdout(deployed, pngs, tmp_path):
    """`--json FILE` as every verb takes it: the lines as usual plus the file; `-` prints only
    the JSON."""
    image = str(pngs[0] / "img1.png")
    res = CliRunner().invoke(
        app, ["predict", "-m", str(deployed), "--json", "-", "--top", "2", image]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert len(doc) == 1 and len(doc[0]["top"]) == 2
    assert abs(sum(q for _, q in doc[0]["top"])) <= 1 + 1e-9
    out = tmp_path / "sub" / "p.json"
    res = CliRunner().invoke(app, ["predict", "-m", str(deployed), "--json", str(out), image])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert len(saved) == 1 and len(saved[0]["top"]) == 3  # the default --top
    assert saved[0]["name"] == doc[0]["name"] and f"{image}: " in res.output
    res = CliRunner().invoke(
        app, ["predict", "-m", str(deployed), "--json", "/proc/x/p.json", image]
    )
    assert res.exit_code == 2 and "cannot write --json /proc/x/p.json" in " ".join(
        res.output.split()
    )


def test_bad_deploy_options_are_usage_errors():
    with pytest.raises(UsageError, match="--max-drop must be >= 0"):
        DeployConfig(max_drop=-1)
    with pytest.raises(UsageError, match="batch"):
        DeployConfig(batch_sizes=(0,))
    from compress.export.bench.cases import BenchModel, check_names, plan_cases

    with pytest.raises(UsageError, match="unknown precision"):
        check_names(("torch",), ("int3",))
    with pytest.raises(UsageError, match="unknown runtime"):
        check_names(("tensorflow",), ("fp32",))
    from compress.models.zoo.registry import create_model

    model = BenchModel("m", create_model("lenet5").spec, torch_model=object())
    plan = plan_cases([model], (), lambda _: ("fp32",), (1,))
    assert plan.cases == [] and plan.skipped == []


def test_excluded_runtimes_are_not_tried(trained_lenet, tmp_path, mini_data):
    cfg = DeployConfig(
        precisions=("fp32",), threads=(1,), exclude=("ort-cpu", "no-such-runtime"), **FAST
    )
    r = deploy(str(trained_lenet), tmp_path / "d", cfg, mini_data).to_dict()
    assert "ort-cpu" not in {c["runtime"] for c in r["candidates"]}
    assert r["chosen"]["runtime"] != "ort-cpu" and len(r["candidates"]) > 1
    with pytest.raises(UsageError, match="no runtime"):
        deploy(
            str(trained_lenet),
            tmp_path / "e",
            DeployConfig(runtimes=("torch",), exclude=("torch",)),
        )


def test_precision_rules_follow_the_cpu_and_the_artifact():
    from compress.export.runtimes.precision import unavailable as precision_refusal
    from compress.training.precision import cpu_has_native_bf16

    why = precision_refusal("torch", "bf16")
    assert (why is None) == cpu_has_native_bf16()
    assert precision_refusal("torch", "fp32") is None
    assert precision_refusal("ort-cpu", "int8", "int8") is None
    assert precision_refusal("ort-cpu", "fp32", "int8")  # an int8 graph runs only as int8
    assert precision_refusal("torch", "int8")  # no run-time int8 cast


def test_an_int8_artifact_deploys_as_int8(trained_lenet, tmp_path, mini_data, pngs):
    from compress.quantization.quantize import QuantizeConfig
    from compress.stages.common import ModelRef
    from compress.stages.quantize import run_quantize

    q = tmp_path / "int8"
    run_quantize(
        ModelRef(str(trained_lenet)),
        q,
        QuantizeConfig(samples=40, latency=False, max_drop=None),
        mini_data,
    )
    out = tmp_path / "int8-deployed"
    cfg = DeployConfig(
        runtimes=("ort-cpu", "torch"), threads=(1,), baseline=str(trained_lenet), **FAST
    )
    r = deploy(str(q), out, cfg).to_dict()
    assert (r["chosen"]["runtime"], r["chosen"]["precision"]) == ("ort-cpu", "int8")
    assert r["speedup"] is not None and r["speedup"]["batch_size"] == 1
    fastest, ort = r["speedup"]["vs_fastest_dense"], r["speedup"]["vs_ort_fp32"]
    assert ort["baseline"] == "ort-cpu/fp32/1t" and ort["speedup"] > 0
    base_rows = r["manifest"]["baseline"]["candidates"]
    timed = [c for c in base_rows if c["status"] == "ok"]
    assert {c["runtime"] for c in timed} == {"torch", "ort-cpu"}
    best_base = min(c["latency"]["1"]["p50_ms"] for c in timed)
    assert fastest["baseline_p50_ms"] == pytest.approx(best_base, rel=1e-3)
    assert fastest["speedup"] <= ort["speedup"] + 1e-3  # the fastest dense case: harder bar
    assert r["chosen"]["effective_precision"] == "int8" and (out / "model.onnx").is_file()
    assert any(c["runtime"] == "torch" and c["status"] == "skipped" for c in r["candidates"])
    assert predict(out, [pngs[0] / "img2.png"])[0].probability > 0


def test_deploy_recipe_stage_after_bench(tmp_path):
    from compress.pipeline.recipe import parse_recipe
    from compress.pipeline.runner import plan, run_pipeline

    text = f"""\
name: tiny-deploy
model: lenet5
data: {{data_dir: {FASHION_MINI}, batch_size: 64}}
stages:
  - train: {{epochs: 1, amp: "off"}}
  - quantize: {{method: ptq-static, samples: 40, max_drop: null, latency: false}}
  - bench: {{batch_sizes: [1], runtimes: [ort-cpu], iters: 2, warmup: 1}}
  - deploy: {{runtimes: [ort-cpu, torch], precisions: [fp32, int8], threads: [1],
              seconds: 0.1, max_drop: 100}}
"""
    planned = plan(parse_recipe(text))
    assert planned[-1].kind.name == "deploy" and planned[-1].config["deploy"].max_drop == 100
    result = run_pipeline(parse_recipe(text), tmp_path / "run")
    rec = result.stages[-1]
    assert rec["kind"] == "deploy" and rec["summary"]["precision"] == "int8"
    sp = rec["summary"]["speedup"]  # vs the run's trained dense model, measured alike
    assert sp["vs_ort_fp32"]["baseline"] == "ort-cpu/fp32/1t" and sp["vs_fastest_dense"]
    man = json.loads((tmp_path / "run" / "04-deploy" / MANIFEST).read_text())
    assert man["baseline"]["model"].endswith("01-train")
    with pytest.raises(InvalidInputError, match="unknown option"):
        plan(parse_recipe(text.replace("seconds: 0.1", "secs: 0.1")))
    off = plan(parse_recipe(text.replace("max_drop: 100", "max_drop: 100, vs_baseline: false")))
    assert off[-1].config.extra == {"vs_baseline": False}


def test_a_candidate_that_fails_is_recorded_and_the_others_go_on(
    trained_lenet, tmp_path, mini_data, monkeypatch
):
    import compress.stages.deploy_gate as gate

    real = gate.open_runner

    def flaky(case, *args):
        if case.runtime == "ort-cpu":
            raise RuntimeError("no kernel for FancyOp\nsecond line")
        return real(case, *args)

    monkeypatch.setattr(gate, "open_runner", flaky)
    cfg = DeployConfig(runtimes=("ort-cpu", "torch"), precisions=("fp32",), threads=(1,), **FAST)
    r = deploy(str(trained_lenet), tmp_path / "d", cfg, mini_data).to_dict()
    failed = [c for c in r["candidates"] if c["status"] == "failed"]
    assert [c["runtime"] for c in failed] == ["ort-cpu"]
    assert failed[0]["reason"] == "no kernel for FancyOp"
    assert r["chosen"]["runtime"] == "torch" and r["manifest"]["device"] == "cpu"


def test_existing_output_is_refused_before_any_work(deployed, tmp_path):
    res = CliRunner().invoke(app, ["deploy", "-m", "lenet5", "-o", str(deployed)])
    assert res.exit_code == 2 and "exists" in res.output


def test_predict_reads_jpeg_and_rgb(deployed, pngs, tmp_path):
    from PIL import Image

    img = Image.fromarray(pngs[1][0]).convert("RGB")
    img.save(tmp_path / "a.jpg", quality=95)
    gray = predict(deployed, [pngs[0] / "img0.png"])[0]
    rgb = predict(deployed, [tmp_path / "a.jpg"])[0]
    assert rgb.label == gray.label  # RGB is converted to the model's one channel
    assert abs(rgb.probability - gray.probability) < 0.1  # JPEG loses a little


def test_a_failed_export_leaves_the_onnx_runtimes_out_with_the_reason(
    trained_lenet, tmp_path, mini_data, monkeypatch
):
    import compress.stages.export as export_stage

    def broken(*a, **k):
        raise UnsupportedError("exporter cannot handle FancyOp")

    monkeypatch.setattr(export_stage, "run_export", broken)
    cfg = DeployConfig(runtimes=("torch", "ort-cpu"), precisions=("fp32",), threads=(1,), **FAST)
    r = deploy(str(trained_lenet), tmp_path / "d", cfg, mini_data).to_dict()
    ort = next(c for c in r["candidates"] if c["runtime"] == "ort-cpu")
    assert ort["status"] == "skipped" and "FancyOp" in ort["reason"]
    assert r["chosen"]["runtime"] == "torch"
