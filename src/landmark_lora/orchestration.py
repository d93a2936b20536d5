"""Plain functions behind the Prefect flow ``retrain`` (flows/retrain.py); none of them needs Prefect.

    python flows/retrain.py                       # the flow: detect, ingest, dvc repro, promote, report
    landmark-lora run                             # the same flow, once, from the CLI

    from landmark_lora.orchestration import detect, pipeline_lock, run_dvc_repro
    with pipeline_lock(Path(".cache/retrain.lock"), wait_s=0, owner="me"):
        found = detect(params)                    # photos waiting, photos not trained yet, run not promoted
        result = run_dvc_repro(Path("."), flow_run_id=None)   # raises StageFailed(stage, cause, transient)

The DVC pipeline (dvc.yaml) stays the only DAG: this module runs ``dvc repro`` as one
subprocess and reads what it says; it never runs a stage by itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from landmark_lora import fsutil
from landmark_lora.config import Params
# The lock lives in landmark_lora.locking (ingest and promote take it themselves); re-exported here.
from landmark_lora.locking import LOCK_NAME, LockBusy, lock_holder, lock_path, pipeline_lock  # noqa: F401

REPRO_LOG = "retrain/dvc-repro.log"  # under paths.cache; the full output of the last `dvc repro`
REPORT_MD = "retrain.md"  # under paths.reports; the same markdown as the Prefect artifact
REPORT_JSON = "retrain.json"
EVENT_PHOTOS_ARRIVED = "landmark-lora.photos.arrived"
EVENT_RESOURCE_ID = "landmark-lora.incoming"

Log = Callable[[str], None]


def say(message: str) -> None:
    """Default logger: looks ``print`` up at call time, so Prefect's log_prints captures it."""
    print(message)


# ---------------------------------------------------------------- errors and their kind


class StageFailed(RuntimeError):
    """A DVC stage (or DVC itself) failed. ``transient``: worth retrying (network, lock)."""

    def __init__(self, stage: str, cause: str, transient: bool, details: str = "", returncode: int = 1):
        self.stage, self.cause, self.transient = stage, cause, transient
        self.details, self.returncode = details, returncode
        kind = "transient" if transient else "hard"
        super().__init__(f"stage '{stage}' failed ({kind}): {cause}")


# Network and storage hiccups: an unreachable MLflow server, a flaky S3, DVC's own lock.
_TRANSIENT = re.compile(
    r"(ConnectionError|ConnectionRefused|ConnectionReset|Connection refused|Connection reset|Connection aborted"
    r"|Max retries exceeded|Temporary failure in name resolution|Name or service not known"
    r"|timed out|ReadTimeout|ConnectTimeout|TimeoutError|RemoteDisconnected|BrokenPipe"
    r"|(status(_code)?|HTTP|code)[\s:=]*(50[234]|429)\b|Service Unavailable|Bad Gateway|Gateway Time-?out"
    r"|Too Many Requests"
    r"|EndpointConnectionError|SlowDown|RequestTimeout|ThrottlingException|InternalError"
    r"|Unable to acquire lock|database is locked)",
    re.I,
)
# Exit code the CLI uses for a broken dataset contract (cli.EXIT_CONTRACT): never retried.
_CONTRACT_EXIT = "exited with 3"


def is_transient_text(text: str) -> bool:
    return bool(_TRANSIENT.search(text or ""))


def is_transient_error(exc: BaseException | None) -> bool:
    """True for failures a retry may fix: StageFailed(transient), network errors, timeouts.

    A broken dataset contract, a bad config or a diverged model is hard: retrying cannot help."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StageFailed):
            return exc.transient
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if type(exc).__name__ in ("DatasetContractError", "ConfigError", "PromotionError", "IngestError"):
            return False
        if is_transient_text(f"{type(exc).__name__}: {exc}"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# ---------------------------------------------------------------- detection


@dataclass
class Detection:
    pending: int  # files in the drop folder (not judged yet: ingest may reject some)
    untrained: int  # accepted photos (data/raw) that no finished pipeline run has seen
    unpromoted_run: str | None  # MLflow run of a finished pipeline that promote never judged
    has_data: bool  # anything in data/raw or the drop folder

    def describe(self) -> str:
        text = f"{self.pending} photo(s) in the drop folder, {self.untrained} accepted but not trained yet"
        if self.unpromoted_run:
            text += f", MLflow run {self.unpromoted_run} waiting for promotion"
        return text


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def trained_shas(params: Params) -> set[str]:
    """sha256 of every photo in the last *finished* pipeline run (evaluate ran on exactly this
    processed data); empty when the last run stopped half-way, so its photos count as new."""
    from landmark_lora.tracking import data_version

    processed = Path(params.paths.processed)
    evaluation = _read_json(Path(params.paths.reports) / "eval.json")
    if not evaluation or evaluation.get("data_version") != data_version(processed):
        return set()
    shas: set[str] = set()
    for split in ("train", "val"):
        meta = processed / split / "metadata.jsonl"
        if meta.exists():
            for line in meta.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    shas.add(json.loads(line).get("sha256", ""))
    return shas


def untrained_photos(params: Params) -> int:
    from landmark_lora import rawtable

    raw = {row["sha256"] for row in rawtable.read_rows(params.paths.raw)}
    return len(raw - trained_shas(params))


def unpromoted_run(params: Params) -> str | None:
    """The MLflow run of a finished pipeline (train + evaluate) that promote has not judged:
    e.g. promote failed last time, or someone ran plain `dvc repro`."""
    reports = Path(params.paths.reports)
    run_id = _read_json(reports / "train.json").get("mlflow_run_id")
    if not run_id or _read_json(reports / "eval.json").get("mlflow_run_id") != run_id:
        return None
    promotion = _read_json(reports / "promotion.json")
    # judged: the last promote decided on it, or the operator rolled it back (that sticks)
    judged = {(promotion.get(k) or {}).get("run_id") for k in ("challenger", "rolled_back")}
    return None if run_id in judged else run_id


def detect(params: Params) -> Detection:
    from landmark_lora import rawtable
    from landmark_lora.ops.ingest import pending_photos

    pending = pending_photos(params.paths.incoming)
    raw_rows = rawtable.read_rows(params.paths.raw)
    return Detection(pending, untrained_photos(params), unpromoted_run(params), bool(pending or raw_rows))


def sample_data_refusal(params: Params) -> str | None:
    """Why the synthetic sample set must not be rendered here, or None when it may.

    Synthetic photos are for the embedded default in a fresh clone only. Never over a dataset
    that exists elsewhere (``data/raw.dvc``: `dvc pull` may just have failed) or next to a real
    champion (it would be rescored on synthetic val data and could be replaced)."""
    raw = Path(params.paths.raw)
    dvc_file = raw.parent / f"{raw.name}.dvc"
    if dvc_file.exists():
        return f"{dvc_file} exists: the photos are versioned by DVC; run `dvc pull` instead"
    try:
        from landmark_lora.stages.promote import CHAMPION, _alias, _client

        champion = _alias(_client(params), params.promotion.registered_model, CHAMPION)
    except Exception as err:  # cannot tell: do not risk it
        return f"could not check the MLflow registry for a champion ({type(err).__name__}: {err})"
    if champion is not None:
        return (f"'{params.promotion.registered_model}' has a champion (version {champion.version}) trained on "
                "real photos")
    return None


def render_sample_if_empty(params: Params, log: Log = say) -> int:
    """Fresh clone: render the synthetic sample set into the drop folder. Returns photos rendered.

    Renders nothing when there are photos, or when sample_data_refusal says no (and says why)."""
    from landmark_lora import rawtable
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.ops.ingest import pending_photos
    from landmark_lora.synthetic.render import render_sample_set

    if rawtable.read_rows(params.paths.raw) or pending_photos(params.paths.incoming):
        return 0
    refusal = sample_data_refusal(params)
    if refusal:
        log(f"no photos here, and no synthetic sample set either: {refusal}")
        return 0
    log("no photos yet: rendering the synthetic sample set (landmark-lora sample-data)")
    return render_sample_set(Path(params.paths.incoming), load_catalogue(params.catalogue), params.sample_data)


# ---------------------------------------------------------------- ingest


@dataclass
class IngestSummary:
    accepted: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    versioned: bool = False
    rejections_csv: str = ""
    left: int = 0  # still arriving: stay in the drop folder for the next run

    def to_dict(self) -> dict:
        return asdict(self)


def dvc_add_raw(raw: Path) -> bool:
    """`dvc add data/raw` (writes data/raw.dvc). False when this is not a DVC repository."""
    from landmark_lora.env import venv_env

    if not Path(".dvc").is_dir():
        return False
    subprocess.run([sys.executable, "-m", "dvc", "add", "--quiet", str(raw)], check=True, env=venv_env())
    return True


def ingest_photos(params: Params, log: Log = say) -> IngestSummary:
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.ops.ingest import REJECTIONS, ingest

    report = ingest(params, load_catalogue(params.catalogue), progress=False)
    log(report.summary(params.paths.quarantine))
    summary = IngestSummary(
        accepted=len(report.accepted),
        rejected=list(report.rejected),
        reasons=dict(Counter(report.reasons()).most_common()),
        resumed=report.resumed,
        left=len(report.left),
        rejections_csv=str(Path(params.paths.quarantine) / REJECTIONS) if report.rejected else "",
    )
    if report.accepted and params.ingest.dvc_add:
        summary.versioned = dvc_add_raw(params.paths.raw)
    return summary


# ---------------------------------------------------------------- dvc repro


@dataclass
class ReproResult:
    stages_run: list[str]
    log_path: str

    @property
    def up_to_date(self) -> bool:
        return not self.stages_run


_RUNNING = re.compile(r"^Running stage '([^']+)'")
_FAILED = re.compile(r"ERROR: failed to reproduce '([^']+)': (.*)")
# Progress bars, warnings and libraries' own log lines ("[transformers] ... requires torchvision"):
# never the cause of a failure, so never its headline.
_NOISE = re.compile(r"(it/s\]|s/it\]|\d+%\|)|^\s*$|Warning|warnings.warn|^> |^\s+warn|Loading (weights|pipeline)"
                    r"|^\[(transformers|diffusers|accelerate|peft|torch)\] ")


def clean_line(line: str) -> str:
    # tqdm redraws with \r; keep the final state of the line.
    return line.rstrip("\n").split("\r")[-1].rstrip()


def parse_dvc_failure(output: str, returncode: int) -> StageFailed:
    """Name the failing stage and its cause from `dvc repro` output, and say if a retry may help."""
    lines = [clean_line(x) for x in output.splitlines()]
    failed = [m for m in (_FAILED.search(x) for x in lines) if m]
    if failed:
        stage, dvc_error = failed[-1].group(1), failed[-1].group(2).strip()
    else:
        running = [m.group(1) for m in (_RUNNING.match(x) for x in lines) if m]
        errors = [x.split("ERROR:", 1)[1].strip() for x in lines if "ERROR:" in x]
        stage, dvc_error = "dvc", errors[-1] if errors else f"dvc repro exited with {returncode}"
        if running and not errors:
            stage = running[-1]
    # The stage's own output: from its "Running stage" line to DVC's ERROR line.
    start = max((i for i, x in enumerate(lines) if _RUNNING.match(x) and f"'{stage}'" in x), default=0)
    end = next((i for i in range(len(lines) - 1, -1, -1) if "ERROR:" in lines[i]), len(lines))
    body = [x for x in lines[start + 1:end] if not _NOISE.search(x)]
    trace_at = max((i for i, x in enumerate(body) if x.startswith("Traceback")), default=None)
    if trace_at is not None:  # a Python crash: the exception line is the cause
        exc_lines = [x for x in body[trace_at:] if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", x)]
        headline = exc_lines[-1] if exc_lines else dvc_error
    else:
        useful = [x.strip() for x in body if not re.match(rf"^{re.escape(stage)}: FAILED$", x.strip(), re.I)]
        headline = useful[0] if useful else dvc_error
        # the stage's bullet list says what exactly is wrong (e.g. which contract checks broke)
        bullets = [x for x in useful[1:] if x.startswith("- ")][:3]
        if bullets:
            headline = " ".join([headline.rstrip(".") + ":", "; ".join(b[2:] for b in bullets)])
    details = "\n".join(body[-25:] + [f"ERROR: {dvc_error}"])
    transient = _CONTRACT_EXIT not in dvc_error and is_transient_text("\n".join(body[-40:]) + "\n" + dvc_error)
    return StageFailed(stage, headline, transient, details, returncode)


def _repro_process(workdir: Path, env: dict[str, str], on_line: Log) -> tuple[int, list[str]]:
    """Run `dvc repro` in ``workdir``; stream each line to ``on_line``. Returns (exit code, lines)."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1, errors="replace")
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = clean_line(raw)
        lines.append(line)
        if line and not _NOISE.search(line):
            on_line(line)
    return proc.wait(), lines


def run_dvc_repro(workdir: Path, flow_run_id: str | None, log: Log = say, cache_dir: Path = Path(".cache")) -> ReproResult:
    """`dvc repro` as one step, with this venv first on PATH and the Prefect flow-run id in the
    environment (the train stage tags its MLflow run with it). Raises StageFailed."""
    from landmark_lora.env import venv_env

    env = venv_env()  # this install first on PATH, offline defaults
    if flow_run_id:
        env["PREFECT__FLOW_RUN_ID"] = str(flow_run_id)
    rc, lines = _repro_process(Path(workdir), env, log)
    log_path = Path(workdir) / cache_dir / REPRO_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if rc:
        raise parse_dvc_failure("\n".join(lines), rc)
    stages = [m.group(1) for m in (_RUNNING.match(x) for x in lines) if m]
    return ReproResult(stages, str(log_path))


def fail_orphan_runs(params: Params, flow_run_id: str | None, keep: str | None) -> list[str]:
    """Mark MLflow runs this flow run left RUNNING (a stage crashed mid-run) as FAILED, so
    every finished pipeline execution leaves exactly one good run. Best effort."""
    if not flow_run_id:
        return []
    import mlflow

    from landmark_lora.tracking import configure

    exp = configure(params.mlflow)
    client = mlflow.MlflowClient()
    runs = client.search_runs([exp], f"tags.prefect_flow_run_id = '{flow_run_id}' and attributes.status = 'RUNNING'")
    closed = []
    for run in runs:
        if run.info.run_id != keep:
            client.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    return closed


# ---------------------------------------------------------------- promote, all or nothing


def discard_half_registered(params: Params, run_id: str | None, log: Log = say) -> list[str]:
    """See landmark_lora.stages.promote.discard_half_registered (promote calls it itself)."""
    from landmark_lora.stages.promote import discard_half_registered as discard

    return discard(params, run_id, log)


def promote_all_or_nothing(params: Params, log: Log = say) -> dict:
    """`promote` (stages/promote.py): the one all-or-nothing, idempotent promote path, also
    behind `landmark-lora promote`. Safe to retry. Never forces a rolled-back version back."""
    from landmark_lora.stages.promote import promote

    return promote(params, log=log)


def current_champion(params: Params) -> str | None:
    """The champion version now, or None (also when the registry cannot be reached)."""
    try:
        from landmark_lora.stages.promote import CHAMPION, _alias, _client

        version = _alias(_client(params), params.promotion.registered_model, CHAMPION)
    except Exception:
        return None
    return None if version is None else str(version.version)


# ---------------------------------------------------------------- the report


def mlflow_ui_command(params: Params) -> str:
    from landmark_lora.tracking import tracking_uri

    uri = tracking_uri(params.mlflow)
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')} (MLflow server)"
    return f"mlflow ui --backend-store-uri {uri}"


def where_to_look(params: Params) -> list[tuple[str, str]]:
    reports = params.paths.reports
    return [
        ("retrain report", f"{reports}/retrain.html (offline page); {reports}/{REPORT_MD} (also a Prefect artifact 'retrain-report')"),
        ("Prefect UI", "prefect server start  ->  http://127.0.0.1:4200 (flow runs, logs, artifacts)"),
        ("MLflow UI", mlflow_ui_command(params)),
        ("validation", f"{reports}/validation.json (Data Docs: {reports}/validation/index.html)"),
        ("evaluation", f"{reports}/eval.json, {reports}/eval.html, {reports}/samples/"),
        ("promotion", f"{reports}/promotion.json"),
        ("rejected photos", f"{params.paths.quarantine}/rejections.csv"),
    ]


def print_outcome(state, prog: str, hint: str = "") -> int:
    """Exit code and a short summary of a finished ``retrain`` flow run (its Prefect state)."""
    if state.is_failed():
        print(f"{prog}: FAILED: {state.message}", file=sys.stderr)
        if hint:
            print(f"  details: {hint}", file=sys.stderr)
        return 1
    outcome = state.result()
    print(f"{prog}: {outcome['reason']}")
    for what, where in outcome["where_to_look"].items():
        print(f"  {what:<16}: {where}")
    return 0


_METRICS = ("eval_loss", "background_consistency", "shot_agreement", "landmark_accuracy", "angle_accuracy",
            "pose_accuracy", "output_change", "clip_score")


def _fmt(x: Any) -> str:
    if isinstance(x, (int, float)):
        return f"{x:.4f}"
    return "–" if x is None else str(x)


def metrics_table(params: Params) -> list[str]:
    """New adapter vs champion vs base, from reports/eval.json and reports/promotion.json."""
    reports = Path(params.paths.reports)
    evaluation = _read_json(reports / "eval.json")
    promotion = _read_json(reports / "promotion.json")
    if not evaluation:
        return []
    new = (promotion.get("challenger") or {}).get("metrics") or {}
    prev = promotion.get("previous_champion") or {}
    champ = prev.get("metrics") or {}
    base = evaluation.get("base") or {}
    new_v = (promotion.get("challenger") or {}).get("version", "new")
    champ_h = f"champion (v{prev['version']}{', rescored' if prev.get('rescored') else ''})" if prev else "champion"
    rows = [f"| metric | new adapter (v{new_v}) | {champ_h} | base model |", "|---|---|---|---|"]
    for key in _METRICS:
        value = new.get(key, evaluation.get(key))
        if value is None and key not in base:
            continue
        rows.append(f"| {key} | {_fmt(value)} | {_fmt(champ.get(key)) if prev else 'none yet'} | {_fmt(base.get(key))} |")
    return rows


def render_report(outcome: dict, params: Params) -> str:
    """The markdown published as the Prefect artifact (and written to reports/retrain.md)."""
    status = outcome["status"]
    lines = [f"# retrain: {status}", "", f"**{outcome['reason']}**", ""]
    if outcome.get("flow_run_id"):
        lines += [f"Prefect flow run: `{outcome['flow_run_id']}`", ""]
    photos = outcome.get("photos") or {}
    ingest = photos.get("ingest") or {}
    lines += ["## Photos", "",
              f"- waiting in the drop folder: {photos.get('pending', 0)}",
              f"- accepted: {ingest.get('accepted', 0)}",
              f"- rejected: {len(ingest.get('rejected', []))}"]
    for reason, n in (ingest.get("reasons") or {}).items():
        lines.append(f"  - {n} x {reason}")
    if ingest.get("rejections_csv"):
        lines.append(f"  - details: `{ingest['rejections_csv']}`")
    if ingest.get("left"):
        lines.append(f"- still arriving, left for the next run: {ingest['left']}")
    lines += [f"- accepted but not trained before this run: {photos.get('untrained', 0)}", ""]
    if outcome.get("failure"):
        f = outcome["failure"]
        lines += ["## Failure", "", f"- stage: `{f['stage']}`", f"- cause: {f['cause']}",
                  f"- retried: {'yes (transient)' if f['transient'] else 'no (hard failure)'}",
                  f"- champion: version {outcome.get('champion') or 'none'} (untouched)",
                  f"- photos: safe in `{params.paths.raw}`; the next run trains on them", "",
                  "```", f.get("details", "")[-3000:], "```", ""]
    if outcome.get("stages_run") is not None:
        ran = outcome["stages_run"]
        lines += ["## Pipeline (dvc repro)", "",
                  f"- stages run: {', '.join(ran) if ran else 'none (up to date)'}",
                  f"- full output: `{outcome.get('repro_log', '')}`", ""]
    if outcome.get("decision"):
        lines += ["## Promotion", "", f"- decision: **{outcome['decision']}**",
                  f"- reason: {outcome.get('decision_reason', '')}",
                  f"- champion now: version {outcome.get('champion') or 'none'}", ""]
        table = metrics_table(params)
        if table:
            lines += ["## Metrics", "", *table, ""]
    if outcome.get("mlflow_run_id"):
        lines += ["## MLflow", "", f"- run: `{outcome['mlflow_run_id']}`",
                  f"- open: `{mlflow_ui_command(params)}`", ""]
    lines += ["## Where to look", ""] + [f"- {k}: `{v}`" for k, v in where_to_look(params)]
    return "\n".join(lines) + "\n"


def write_report(outcome: dict, params: Params, markdown: str) -> Path:
    reports = Path(params.paths.reports)
    reports.mkdir(parents=True, exist_ok=True)
    fsutil.write_json_atomic(reports / REPORT_JSON, outcome, indent=2, default=str)
    path = reports / REPORT_MD
    fsutil.write_text_atomic(path, markdown)
    from landmark_lora.report_html import write_html_report

    write_html_report(outcome, params)  # reports/retrain.html: the same run, offline, with pictures
    return path


def publish(outcome: dict, params: Params) -> tuple[dict, str]:
    """The one door out for a run's report: scrub, render, write. Returns (outcome, markdown),
    both scrubbed of credentials (tracking.scrub_text, the scrubber of MLflow params), for the
    Prefect artifact and the flow's return value; writes reports/retrain.json, retrain.md and
    retrain.html (the markdown links to that page).

    Adds ``where_to_look`` and ``report`` (the markdown's path) to the returned outcome."""
    from landmark_lora.tracking import scrub_deep, scrub_text

    public = scrub_deep({**outcome, "where_to_look": dict(where_to_look(params)),
                         "report": str(Path(params.paths.reports) / REPORT_MD)})
    markdown = scrub_text(render_report(public, params))  # render adds URIs from params too
    page = (Path(params.paths.reports) / "retrain.html").resolve()
    markdown += f"\n**Full report, with pictures (one offline page):** [{page}]({page.as_uri()})\n"
    write_report(public, params, markdown)  # also writes reports/retrain.html
    return public, markdown


@contextmanager
def working_directory(path: str | Path) -> Iterator[Path]:
    """chdir for the block: params.yaml paths, dvc.lock and the sqlite MLflow store are relative."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield Path.cwd()
    finally:
        os.chdir(old)


# ---------------------------------------------------------------- finding the flow and the deployment


def repo_root() -> Path:
    """The checkout holding flows/ and prefect.yaml: the current folder if it has them, else the
    source tree of this (editable) install."""
    here = Path.cwd()
    if (here / "flows" / "retrain.py").is_file():
        return here
    return Path(__file__).resolve().parents[2]


def load_retrain_flow():
    """The `retrain` flow from flows/retrain.py (a file, so Prefect deployments can point at it)."""
    from prefect.flows import load_flow_from_entrypoint

    path = repo_root() / "flows" / "retrain.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the repository root")
    return load_flow_from_entrypoint(f"{path}:retrain")


def deployment_spec(name: str = "nightly-retrain", prefect_yaml: Path | None = None) -> dict:
    """One deployment from prefect.yaml (schedules, triggers, parameters, concurrency)."""
    import yaml

    path = prefect_yaml or repo_root() / "prefect.yaml"
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for dep in spec.get("deployments") or []:
        if dep.get("name") == name:
            return dep
    raise KeyError(f"{path}: no deployment named {name!r}")


def serve_kwargs(spec: dict) -> dict:
    """flow.serve / flow.to_deployment arguments equal to a prefect.yaml deployment."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron

    schedules = [Cron(s["cron"], timezone=s.get("timezone")) for s in spec.get("schedules") or [] if s.get("cron")]
    triggers = [DeploymentEventTrigger(**t) for t in spec.get("triggers") or []]
    return {"schedules": schedules, "triggers": triggers, "parameters": spec.get("parameters") or {},
            "description": spec.get("description"), "tags": spec.get("tags") or []}
