"""A claim knows its run: which run a notebook's measured numbers came from, and whether this is it.

A notebook asserts two kinds of claims. Claims that hold for any reasonable model (a theorem, a
closed form, "KL = 0 at step 0") are asserted everywhere. Claims about numbers one run measured
("forward KL at β = 0.5 fits all seven sentences", "gold rises by 1.9 nats") hold for that run:
its model, device type, precision, plan (mode, grid, seeds) and seed. The saved outputs were made
by one such run, recorded here per notebook in ``SAVED_RUNS``; a notebook builds the fingerprint
of what it just ran with :func:`fingerprint` and asserts its saved-run claims only when
:func:`compare` finds no difference, and otherwise lists them as skipped with the reason (in
Colab: bert-base-uncased or the Hub's SmolLM2, on ``cuda``, perhaps in bf16). Introduced in
notebook 06; used by 06 to 12.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from kl_helpers.llm.model import SMOLLM2
from kl_helpers.models import MINILM

BUNDLED_LLM = f"{SMOLLM2} (Q4_1 GGUF)"  # llm.resolve_llm("bundled").name
# Notebooks 10 and 11's models: the policy, then the bases of the proxy and gold rewards
# (RewardModel.name).
RLHF_MODELS = " + ".join(
    [
        BUNDLED_LLM,
        f"reward-sentiment:{MINILM}|truncate-left",
        f"reward-reviews:{MINILM}|truncate-left",
    ]
)


@dataclass(frozen=True)
class RunFingerprint:
    """What made a run's numbers: model name, device type, precision and plan (with its seeds)."""

    model: str  # ModelChoice.name / LLMChoice.name, e.g. "all-MiniLM-L6-v2"
    device: str  # device type: "cpu", "cuda" or "mps"
    precision: str  # "fp32", "bf16" or "fp16": the autocast dtype the run trained with
    plan: str  # the notebook's plan, e.g. "full" or "article grid, seed 0"; "edited" otherwise

    def describe(self) -> str:
        """One line, e.g. ``all-MiniLM-L6-v2 on cpu, fp32, plan full``."""
        return f"{self.model} on {self.device}, {self.precision}, plan {self.plan}"


# The runs that produced the committed outputs (`make run` on a 2-core CPU, offline), and the quick
# runs that `make test` checks them with where a notebook asserts claims about its quick plan too.
SAVED_RUNS: dict[str, RunFingerprint] = {
    "06_bert_experiment": RunFingerprint(MINILM, "cpu", "fp32", "article grid, seed 0, 100 epochs"),
    "06_bert_experiment (quick)": RunFingerprint(
        MINILM, "cpu", "fp32", "article grid, seed 0, 40 epochs"
    ),  # make test's
    "07_beta_strength": RunFingerprint(MINILM, "cpu", "fp32", "full"),
    "07_beta_strength (quick)": RunFingerprint(MINILM, "cpu", "fp32", "quick"),  # make test's
    "08_forgetting": RunFingerprint(
        MINILM, "cpu", "fp32", "full (reference: last 64 tokens, 3 epochs, lr 0.0001, batch 16)"
    ),
    "09_llm_token_kl": RunFingerprint(BUNDLED_LLM, "cpu", "fp32", "full"),
    "10_rlhf": RunFingerprint(RLHF_MODELS, "cpu", "fp32", "full"),
    "11_best_of_n": RunFingerprint(RLHF_MODELS, "cpu", "fp32", "full"),
    "12_trainer": RunFingerprint(MINILM, "cpu", "fp32", "forward, β 0.5, 30 epochs, seed 0"),
}

_PRECISIONS = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def precision_name(dtype: torch.dtype | str | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for an autocast/parameter dtype (None = no autocast),
    or a name already in that form; ValueError for anything else."""
    if isinstance(dtype, str):
        if dtype in _PRECISIONS.values():
            return dtype
        raise ValueError(f"precision must be one of fp32, bf16, fp16, got {dtype!r}")
    if dtype not in _PRECISIONS:
        raise ValueError(f"no precision name for dtype {dtype}")
    return _PRECISIONS[dtype]


def fingerprint(
    model: str, device: torch.device | str, precision: torch.dtype | str | None, plan: str
) -> RunFingerprint:
    """The fingerprint of what ran: ``device`` reduced to its type (``cuda:0`` → ``cuda``)."""
    return RunFingerprint(str(model), torch.device(device).type, precision_name(precision), plan)


@dataclass(frozen=True)
class SavedRunCheck:
    """This run against the saved one: ``matches`` is True when every field is the same;
    ``differences`` names each field that is not (``"model: X here, Y in the saved run"``)."""

    run: RunFingerprint
    saved: RunFingerprint
    differences: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return self.matches

    def skip_note(self, n_claims: int) -> str:
        """Why ``n_claims`` saved-run claims were not asserted here (empty when they were)."""
        if self.matches:
            return ""
        return (
            f"skipped {n_claims} claim(s) measured on the saved run ({self.saved.describe()}): "
            + "; ".join(self.differences)
        )


def compare(
    notebook: str, run: RunFingerprint, fields: Sequence[str] | None = None
) -> SavedRunCheck:
    """``run`` against ``SAVED_RUNS[notebook]`` on ``fields`` (default: all of them; e.g. leave
    ``plan`` out for claims that hold for the quick plan too; one name may be given as a string).
    ValueError for a notebook with no saved run or an unknown field name."""
    if isinstance(fields, str):  # one field, not its letters
        fields = (fields,)
    if notebook not in SAVED_RUNS:
        raise ValueError(f"no saved run for {notebook!r}; known: {sorted(SAVED_RUNS)}")
    names = [f.name for f in dataclasses.fields(RunFingerprint)]
    unknown = sorted(set(fields or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown fingerprint field(s) {unknown}; fields are {names}")
    saved = SAVED_RUNS[notebook]
    differences = tuple(
        f"{name}: {getattr(run, name)} here, {getattr(saved, name)} in the saved run"
        for name in names
        if (fields is None or name in fields) and getattr(run, name) != getattr(saved, name)
    )
    return SavedRunCheck(run, saved, differences)


Claims = Mapping[str, object]  # claim text -> bool, or a zero-argument callable returning one


@dataclass(frozen=True)
class ClaimReport:
    """What a notebook's check cell shows: one row per claim, ``(claim, result)``, where result is
    ``"holds"`` or ``"skipped [n]"``; ``notes[n - 1]`` says why those claims were not asserted.
    Displays as an HTML table in Jupyter, Colab and the web book, and as plain text elsewhere."""

    rows: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()

    @property
    def n_held(self) -> int:
        return sum(result == "holds" for _, result in self.rows)

    def headline(self) -> str:
        skipped = len(self.rows) - self.n_held
        return f"{len(self.rows)} claims: {self.n_held} hold" + (
            f", {skipped} skipped (not the saved run)" if skipped else ""
        )

    def __str__(self) -> str:
        width = max((len(result) for _, result in self.rows), default=5)
        lines = [self.headline()] + [f"  {result:<{width}}  {claim}" for claim, result in self.rows]
        lines += [f"[{i}] {note}" for i, note in enumerate(self.notes, 1)]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{'✓ ' if result == 'holds' else ''}{html.escape(result)}</td>"
            f"<td style='text-align:left'>{html.escape(claim)}</td></tr>"
            for claim, result in self.rows
        )
        notes = "".join(f"<p>[{i}] {html.escape(n)}</p>" for i, n in enumerate(self.notes, 1))
        return (
            f"<p><b>{html.escape(self.headline())}</b></p><table><thead><tr><th>result</th>"
            f"<th style='text-align:left'>claim</th></tr></thead><tbody>{body}</tbody></table>"
            + notes
        )


def check_claims(always: Claims, *saved_runs: tuple[Claims, SavedRunCheck]) -> ClaimReport:
    """Assert every claim of ``always``, and those of each ``(claims, check)`` pair whose
    ``check`` matches the saved run; return the table a notebook's last cell shows.

    Values are booleans or zero-argument callables returning one (so that a claim about the
    saved run is not even evaluated elsewhere). Every claim is evaluated before anything is
    raised: ``AssertionError`` lists each claim that fails (or raised, with its exception).
    Claims of a pair whose check does not match are listed as skipped, with the reason.
    """
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    failed: list[str] = []

    def run(group: Claims) -> None:
        for claim, ok in group.items():
            try:
                held = bool(ok() if callable(ok) else ok)
            except Exception as error:  # a claim that cannot be evaluated does not hold
                failed.append(f"{claim} (raised {type(error).__name__}: {error})")
                continue
            if held:
                rows.append((claim, "holds"))
            else:
                failed.append(claim)

    run(always)
    for group, check in saved_runs:
        if check.matches:
            run(group)
        else:
            notes.append(check.skip_note(len(group)))
            rows += [(claim, f"skipped [{len(notes)}]") for claim in group]
    if failed:
        raise AssertionError(
            f"{len(failed)} claim(s) do not hold:\n" + "\n".join(f"  - {c}" for c in failed)
        )
    return ClaimReport(tuple(rows), tuple(notes))
