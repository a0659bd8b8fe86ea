"""`janus`: one sub-command per pipeline stage (what dvc.yaml calls), plus the user tools.

Every stage validates params.yaml and the raw inputs first, then runs inside its own MLflow
child run. Imports are lazy so `janus --help` and `janus check` answer in a second or two.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from janus_align.config import Params, load_params
from janus_align.errors import JanusError
from janus_align.stages import STAGES, STAGES_WITH_MODEL

# Offline and quiet by default; a user who has a hub or wants telemetry can override these.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_MLFLOW_LOG_ARTIFACTS": "0",
    # Idle OpenMP threads sleep instead of spinning: with several processes on few cores
    # (tune workers, a test suite) spinning threads slowed generation about 10x here.
    "OMP_WAIT_POLICY": "PASSIVE",
}.items():
    os.environ.setdefault(_name, _value)


def prepare(params_path: str) -> Params:
    """The validation every stage runs first: params, then raw inputs."""
    from janus_align.inputs import check_all

    params = load_params(params_path)
    check_all()
    return params


def run_stage(name: str, params_path: str, **options: Any) -> Any:
    module_name, fixed, _ = STAGES[name]
    params = prepare(params_path)
    from janus_align import tracking

    started = time.perf_counter()
    with tracking.stage_run(name, params, run_name=tracking.stage_run_name(name, options)):
        result = importlib.import_module(module_name).run(params, **fixed, **options)
        import mlflow

        mlflow.log_metric("stage_wall_s", time.perf_counter() - started)
    return result


def cmd_check(args: argparse.Namespace) -> None:
    from janus_align.inputs import check_all
    from janus_align.plan import describe_plan, missing_api_keys

    params = load_params(args.params)
    found = check_all()
    print(f"{args.params}: valid (profile {params.profile})")
    for key, value in found.items():
        print(f"  {key}: {value}")
    print(describe_plan(params))
    missing = missing_api_keys(params)
    if missing:
        raise JanusError(f"{args.params}: {len(missing)} API setting(s) without a key\n  " + "\n  ".join(missing))


def _tool(module: str, function: str) -> Callable[[argparse.Namespace], Any]:
    return lambda args: getattr(importlib.import_module(module), function)(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="janus", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in STAGES.items():
        stage = sub.add_parser(name, help=f"stage: {help_text}")
        if name in STAGES_WITH_MODEL:
            stage.add_argument("--model", required=True, help="candidate name from generate.candidates/external")
        stage.set_defaults(handler=lambda a, n=name: run_stage(n, a.params, **_stage_options(a)))
    sub.add_parser("check", help="validate params.yaml and data/, print what the profile will run").set_defaults(
        handler=cmd_check
    )
    sub.add_parser("setup-data", help="restore data/ from the DVC remote, or from the bundled defaults").set_defaults(
        handler=_tool("janus_align.setup_data", "main")
    )
    use_profile = sub.add_parser("use-profile", help="rewrite params.yaml with profiles/NAME.yaml applied")
    use_profile.add_argument("name", help="ci or paper (default: `git checkout params.yaml`)")
    use_profile.set_defaults(handler=_tool("janus_align.config.profiles", "main"))
    sub.add_parser("estimate", help="requests, tokens and cost the current params would spend").set_defaults(
        handler=_tool("janus_align.synth.estimate", "main")
    )
    sub.add_parser("summary", help="where the results of the last run are").set_defaults(
        handler=_tool("janus_align.summary", "main")
    )
    sub.add_parser("tracking-uri", help="the MLflow store in effect (MLFLOW_TRACKING_URI, else params)").set_defaults(
        handler=_tool("janus_align.tracking", "print_tracking_uri")
    )
    dvc_deps = sub.add_parser("dvc-deps", help="each stage's code deps from its imports; --write puts them in dvc.yaml")
    dvc_deps.add_argument("--write", action="store_true", help="rewrite the src/janus_align deps of dvc.yaml's stages")
    dvc_deps.add_argument("--dvc-file", default="dvc.yaml", help="the pipeline file (default: dvc.yaml)")
    dvc_deps.set_defaults(handler=_tool("janus_align.code_deps", "main"))
    validate_data = sub.add_parser(
        "validate-data", help="validate a split or bench file (GX suites) or an evaluation's official file"
    )
    validate_data.add_argument(
        "--kind",
        required=True,
        choices=[
            "sft",
            "sft_small",
            "dpo",
            "orpo",
            "rm",
            "bench",
            "mt_bench",
            "alpaca_eval",
            "arena_hard",
            "realtoxicity",
        ],
    )
    validate_data.add_argument("file")
    validate_data.set_defaults(handler=_validate_data)
    evaluate = sub.add_parser("evaluate", help="judge any responses file against any bench file")
    evaluate.add_argument("--bench", required=True)
    evaluate.add_argument("--responses", required=True)
    evaluate.add_argument("--out", default="eval-out", help="folder for judgments and scores")
    evaluate.set_defaults(handler=_tool("janus_align.evaluate.evaluate_file", "main"))
    ablations = sub.add_parser("ablations", help="queue the paper's ablations as DVC experiments, or tabulate them")
    ablations.add_argument("action", choices=["queue", "report"])
    ablations.add_argument("--from", dest="source", default=None, help="report: a recorded `dvc exp show --json`")
    ablations.add_argument("--out", default="reports/ablations", help="report: output folder")
    ablations.set_defaults(handler=_tool("janus_align.evaluate.ablations", "main"))
    chat = sub.add_parser("chat", help="answer a prompt under a system message with a model")
    chat.add_argument("--model", default="models:/janus@champion", help="models:/NAME@ALIAS or a checkpoint dir")
    chat.add_argument("--system", default=None)
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("prompt")
    chat.set_defaults(handler=_tool("janus_align.registry.chat", "main"))
    preload = sub.add_parser(
        "preload", help="run COMMAND (e.g. dvc repro) with janus stages forked from one preloaded process"
    )
    preload.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    preload.set_defaults(handler=_preload)
    simulate_api = sub.add_parser("simulate-api", help="serve the simulated OpenAI API on loopback (tests, benchmarks)")
    importlib.import_module("janus_align.simulated_api.__main__").add_arguments(simulate_api)
    simulate_api.set_defaults(handler=_tool("janus_align.simulated_api.__main__", "main"))
    judge = sub.choices["judge"]
    judge.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="NAME",
        help="judge only this candidate (repeatable); default: generate.candidates + generate.external",
    )
    judge.set_defaults(handler=lambda a: run_stage("judge", a.params, models=a.models))
    tune = sub.choices["tune"]
    tune.add_argument("--workers", type=int, default=1, help="local worker processes sharing one study")
    return parser


def _validate_data(args: argparse.Namespace) -> None:
    """The evaluations' official formats (eval_formats.VALIDATORS), else the GX suites of a split or bench."""
    from pathlib import Path

    from janus_align.evaluate.eval_formats import VALIDATORS

    if args.kind in VALIDATORS:
        print(f"{args.file}: valid {args.kind} file: {VALIDATORS[args.kind](Path(args.file))}")
        return
    importlib.import_module("janus_align.validate.validate").main(args)


def _preload(args: argparse.Namespace) -> None:
    from janus_align import preload

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise JanusError("janus preload: name the command to run, e.g. `janus preload -- dvc repro`")
    code = preload.serve(command, main)
    if code:
        raise SystemExit(code)


def _stage_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {}
    if getattr(args, "model", None):
        options["model"] = args.model
    if getattr(args, "workers", 1) != 1:
        options["workers"] = args.workers
    return options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command != "preload":
        from janus_align import preload

        served = preload.delegate(argv)  # under `janus preload`: run in its preloaded child
        if served is not None:
            return served
    try:
        args.handler(args)
    except JanusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
