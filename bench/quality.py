"""Model quality with the job file's defaults: AUC, log loss and calibration against scikit-learn.

    python -m bench.quality [--key-bits 512] [--encrypted breast,...] [--seeds 5] [--quick]
        [--sets rare,vip2000-1,...]

For each set A trains with the DEFAULT job (only the dataset names and a small key, quality does not
depend on the key size) through the encrypted protocol in memory (both roles in one process), then
scores held-out new users (the VIP generator's new users; for FATE's splits 20% of the users held out,
a quarter of whom B does not know). On the held-out users it prints:

- joint model on the users B knows: AUC and log loss against scikit-learn's LogisticRegression fitted
  on the same training users (the aligned training rows, joined columns, the same preprocessing);
- calibration: mean predicted probability against the observed rate over the whole file, and a
  10-bin reliability table (bins of equal count by predicted probability);
- the matched/unmatched split: users scored by the joint model and by A's own A-only model, with each
  group's AUC (and scikit-learn's A-only AUC on the unmatched users for comparison);
- why training stopped and after how many epochs.

Sets not named in ``--encrypted`` (the large ones: too slow here) are run as a plain-numpy REPLAY of the identical
schedule (``fedlearn.model.fit_plain_reference``, the same calibration and A-only model); every row
says whether it is "encrypted" or "replay", and the smaller sets run both to show how close the replay
is to the encrypted run (the replay is accepted only where that difference is below 0.001 AUC).

Targets (issue 10): AUC within 0.005 of scikit-learn, log loss within 1.02x, |mean predicted /
observed - 1| <= 10%, on every set. Results: docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from fedlearn import metrics
from fedlearn.calibration import fit_platt
from fedlearn.config import DatasetSpec
from fedlearn.crypto.psi import common_order
from fedlearn.data import PartyTable, load_party_table, read_table, write_table_atomic
from fedlearn.datasets import make_vip
from fedlearn.job import JobSpec, parse_job
from fedlearn.model import PlainRun, fit_plain_reference, split_train_validation
from fedlearn.preprocess import Preprocessor
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.limits import MIN_ROWS_PER_COLUMN
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import ModelStore
from party_a.evaluate import a_only_probabilities, fit_a_only, labelled_rate
from party_a.score import score
from party_a.train import train
from party_b.node import NodeB

FATE = Path(__file__).resolve().parents[1] / "data" / "fate"
RESULTS = Path(__file__).resolve().parent / "results"
AUC_TARGET, LOG_LOSS_TARGET, CALIBRATION_TARGET = 0.005, 1.02, 0.10
NEW_USERS = 20_000


@dataclass(frozen=True)
class QualitySet:
    """One data set as the two parties' files: A's training file, B's file, A's new users + truth."""

    name: str
    a_spec: DatasetSpec
    b_spec: DatasetSpec
    new_users: Path
    truth: pd.DataFrame  # id column (normalised), label


def _job(key_bits: int) -> str:
    # The job DEFAULTS: only the dataset names and a small key (quality does not depend on it).
    return f'[data]\ndataset = "d"\n[crypto]\nkey_bits = {key_bits}\n'


def fate_set(name: str, out: Path, seed: int = 11) -> QualitySet:
    """FATE's split: 20% of the users held out as new users; B lacks a quarter of those."""
    guest, host = fate_frames(name)
    rng = np.random.default_rng(seed)
    held = rng.random(len(guest)) < 0.2
    lacked = set(guest["id"][held & (rng.random(len(guest)) < 0.25)].astype(str))
    out.mkdir(parents=True, exist_ok=True)
    write_table_atomic(guest[~held], out / "a_train.csv")
    write_table_atomic(guest[held].drop(columns=["y"]), out / "a_new.csv")
    write_table_atomic(host[~host["id"].astype(str).isin(lacked)], out / "b.csv")
    truth = pd.DataFrame({"id": guest["id"][held].astype(str).str.strip(), "y": guest["y"][held]})
    return QualitySet(
        name,
        DatasetSpec("d", out / "a_train.csv", "id", "y", None, []),
        DatasetSpec("d", out / "b.csv", "id", None, None, []),
        out / "a_new.csv",
        truth,
    )


#: FATE's sets that are not a 0/1 guest/host pair as published, and how they become one (A's columns
#: and label, B's columns): data/fate/README.md.
FATE_DERIVED = ("give_credit", "vehicle0", "vehicle1", "vehicle2", "vehicle3")


def fate_frames(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A's (``id``, ``y``, its columns) and B's (``id``, its columns) frames of a FATE set.

    ``breast`` and ``default_credit`` as published; ``give_credit`` (one file) split A: x0, x1 and
    B: x2, x3, x4; ``vehicleK`` the four-class vehicle set as class K against the rest.
    """
    if name == "give_credit":
        table = read_table(FATE / "give_credit_hetero_test.csv.gz")
        return table[["id", "y", "x0", "x1"]], table[["id", "x2", "x3", "x4"]]
    base = "vehicle_scale" if name.startswith("vehicle") else name
    guest = read_table(FATE / f"{base}_hetero_guest.csv.gz")
    host = read_table(FATE / f"{base}_hetero_host.csv.gz")
    if base == "vehicle_scale":  # read_table keeps cells as text
        guest["y"] = (pd.to_numeric(guest["y"]) == int(name.removeprefix("vehicle"))).astype(int)
    return guest, host


def wide_set(rows: int, seed: int, out: Path, noise_columns: int) -> QualitySet:
    """The VIP set with ``noise_columns`` more columns at B that carry nothing (standard normal):
    a wide partner, whose columns need batches of more than 1024 rows (``batch_size = "auto"``)."""
    qs = vip_set(rows, seed, out, new_users=_new(rows))
    b = read_table(qs.b_spec.path)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((len(b), noise_columns)).round(3).astype(str)
    extra = pd.DataFrame(noise, columns=[f"noise{k}" for k in range(noise_columns)])
    path = out / "b_wide.csv"
    write_table_atomic(pd.concat([b.reset_index(drop=True), extra], axis=1), path)
    return replace(qs, name=f"{qs.name}-wide{noise_columns}", b_spec=replace(qs.b_spec, path=path))


def vip_set(
    rows: int, seed: int, out: Path, rare: float | None = None, new_users: int | None = None
) -> QualitySet:
    """The synthetic VIP set; with ``rare`` its positives are thinned to that rate (A's files).

    ``new_users``: how many held-out new users to measure on (the generator's default otherwise).
    """
    vip = make_vip(out, rows=rows, seed=seed, new_users=new_users)
    truth = read_table(vip.a_new_users_truth_csv)
    truth[vip.id_column] = truth[vip.id_column].astype(str).str.strip()
    if rare is not None:
        rng = np.random.default_rng(seed)
        a_train = read_table(vip.a_train_csv)
        a_train = a_train[_thin(a_train[vip.label_column].to_numpy(), rare, rng)]
        write_table_atomic(a_train, vip.a_train_csv)
        keep = _thin(truth[vip.label_column].to_numpy(), rare, rng)
        new = read_table(vip.a_new_users_csv)
        new = new[new[vip.id_column].astype(str).str.strip().isin(set(truth[vip.id_column][keep]))]
        write_table_atomic(new, vip.a_new_users_csv)
        truth = truth[keep]
    name = f"vip{rows}-s{seed}" + (f"-rare{rare:g}" if rare else "")
    return QualitySet(
        name,
        DatasetSpec(
            "d", vip.a_train_csv, vip.id_column, vip.label_column, None, list(vip.a_categorical)
        ),
        DatasetSpec("d", vip.b_features_csv, vip.id_column, None, None, list(vip.b_categorical)),
        vip.a_new_users_csv,
        truth.rename(columns={vip.id_column: "id", vip.label_column: "y"}),
    )


def _thin(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A mask keeping every negative and just enough positives for a positive rate of ``rate``."""
    labels = np.asarray(labels, dtype=float)  # read_table gives text cells
    positives = np.flatnonzero(labels == 1)
    wanted = int(rate / (1 - rate) * np.sum(labels != 1))
    keep = labels != 1
    keep[rng.permutation(positives)[:wanted]] = True
    return keep


# ---- the plaintext view of the same run (for scikit-learn and the replay) ---------------------


@dataclass
class Plain:
    x_a: np.ndarray  # aligned rows, A's columns + intercept column last
    x_b: np.ndarray
    y: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    prep_a: Preprocessor
    prep_b: Preprocessor
    names_a: list[str]


def _table(spec: DatasetSpec, label: bool) -> PartyTable:
    return load_party_table(
        spec.path,
        id_column=spec.id_column,
        label_column=spec.label_column if label else None,
        categorical=spec.categorical,
        require_label=label,
    )


def plain_view(qs: QualitySet, seed: int = 42) -> Plain:
    """Both parties' aligned, preprocessed, quantised matrices in the session's common order."""
    a, b = _table(qs.a_spec, True), _table(qs.b_spec, False)
    b_index = pd.Index([str(i) for i in b.ids])
    b_ids = set(b_index)
    common = [str(i) for i in a.ids if str(i) in b_ids]
    common = [common[i] for i in common_order(common, seed)]
    ia = pd.Index([str(i) for i in a.ids]).get_indexer(common)
    ib = b_index.get_indexer(common)
    train_rows, validation_rows = split_train_validation(len(common), 0.2, seed)
    config = parse_job(_job(512)).params.preprocess

    def fit(table: PartyTable, rows: np.ndarray) -> tuple[Preprocessor, np.ndarray]:
        frame = table.features.iloc[rows].reset_index(drop=True)
        prep = Preprocessor(
            numeric=table.numeric_columns, categorical=table.categorical_columns, config=config
        )
        prep.fit(frame.iloc[train_rows])
        return prep, np.asarray(prep.quantize(prep.transform(frame)) / prep.scales_)

    prep_a, x_a = fit(a, ia)
    prep_b, x_b = fit(b, ib)
    assert a.labels is not None
    return Plain(
        np.hstack([x_a, np.ones((len(common), 1))]),
        x_b,
        np.asarray(a.labels)[ia].astype(float),
        train_rows,
        validation_rows,
        prep_a,
        prep_b,
        list(prep_a.output_names_),
    )


def _new_user_matrices(
    qs: QualitySet, plain: Plain
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, x_A, x_B or NaN rows, matched) for the new users, in the new-user file's order."""
    new = load_party_table(
        qs.new_users, id_column=qs.a_spec.id_column, categorical=qs.a_spec.categorical
    )
    b = _table(qs.b_spec, False)
    ids = np.array([str(i) for i in new.ids], dtype=object)
    x_a = np.asarray(plain.prep_a.quantize(plain.prep_a.transform(new.features)))
    x_a = x_a / plain.prep_a.scales_
    b_rows = pd.Index([str(i) for i in b.ids]).get_indexer(ids)
    matched = b_rows >= 0
    x_b = np.full((len(ids), plain.x_b.shape[1]), np.nan)
    frame = b.features.iloc[b_rows[matched]].reset_index(drop=True)
    x_b[matched] = plain.prep_b.quantize(plain.prep_b.transform(frame)) / plain.prep_b.scales_
    return ids, x_a, x_b, matched


def sklearn_reference(plain: Plain) -> tuple[LogisticRegression, LogisticRegression]:
    """scikit-learn on the same training users: joint (A's and B's columns) and A-only."""
    x = np.hstack([plain.x_a[:, :-1], plain.x_b])
    rows = plain.train
    joint = LogisticRegression(max_iter=5000).fit(x[rows], plain.y[rows])
    a_only = LogisticRegression(max_iter=5000).fit(plain.x_a[rows, :-1], plain.y[rows])
    return joint, a_only


# ---- the two ways of running the defaults -------------------------------------------------------


def encrypted_run(qs: QualitySet, tmp: Path, key_bits: int) -> dict[str, Any]:
    """Train with the job defaults and score the new users, through the encrypted protocol."""
    policy = PeerPolicy(min_key_bits=key_bits)  # B's defaults otherwise (min batch, max epochs)
    job = parse_job(_job(key_bits))
    started = time.perf_counter()
    node = NodeB(
        name="party-b",
        datasets={"d": qs.b_spec},
        policy=policy,
        model_dir=tmp / "b-models",
        allowed_partners={"party-a"},
    )
    try:
        peer = InMemoryPeer(node, identity="party-a")
        meta = train(
            peer,
            table=_table(qs.a_spec, True),
            spec=qs.a_spec,
            job=job,
            own_name="party-a",
            store=ModelStore(tmp / "a-models"),
        )
        seconds = time.perf_counter() - started
        model = ModelStore(tmp / "a-models").load(meta["model_id"])
        out = tmp / "scores.csv"
        score(
            peer,
            model=model,
            input_path=qs.new_users,
            output_path=out,
            expected_partner="party-b",
        )
    finally:
        node.close()
    scored = read_table(out)
    scored[qs.a_spec.id_column] = scored[qs.a_spec.id_column].astype(str)
    return {
        "ids": scored[qs.a_spec.id_column].to_numpy(dtype=object),
        "score": scored["score"].to_numpy(dtype=float),
        "model": scored["model"].astype(str).to_numpy(),
        "stopped": meta["stopped"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / max(1, meta["epochs_completed"]),
    }


def replay_run(
    qs: QualitySet, plain: Plain, fit: Callable[..., PlainRun] = fit_plain_reference
) -> dict[str, Any]:
    """The identical schedule in plain numpy: same start, steps, averaging, stopping, calibration.

    ``fit``: ``fit_plain_reference`` or a function with its signature (bench/residual_forms.py).
    """
    job = parse_job(_job(512))
    params = job.params
    rows = plain.train
    started = time.perf_counter()
    fitted = fit(
        plain.x_a[rows],
        plain.x_b[rows],
        plain.y[rows],
        epochs=params.epochs,
        batch_size=auto_batch_size(job, plain),
        seed=params.seed,
        optimizer=params.optimizer,
        learning_rate=params.learning_rate,
        l2=params.l2,
        l1=params.l1,
        tolerance=job.tolerance,
        patience=job.patience,
    )
    seconds = time.perf_counter() - started
    val = plain.validation
    calibration = fit_platt(
        plain.x_a[val] @ fitted.w_a + plain.x_b[val] @ fitted.w_b,
        plain.y[val],
        **labelled_rate(plain.y, rows, val),
    )
    fallback = fit_a_only(plain.x_a[:, :-1], plain.y, rows, val, plain.names_a)
    ids, x_a, x_b, matched = _new_user_matrices(qs, plain)
    probabilities = a_only_probabilities(fallback, x_a)
    joint_logits = x_a[matched] @ fitted.w_a[:-1] + fitted.w_a[-1] + x_b[matched] @ fitted.w_b
    probabilities[matched] = calibration.apply(joint_logits)
    epochs = len(fitted.changes)
    reason = "converged" if epochs < params.epochs else "budget"
    return {
        "ids": ids,
        "score": probabilities,
        "model": np.where(matched, "joint", "a_only"),
        "stopped": {"reason": reason, "epochs": epochs},
        "seconds": seconds,
        "seconds_per_epoch": math.nan,
    }


def auto_batch_size(job: JobSpec, plain: Plain) -> int:
    """The batch size an encrypted run of ``job`` ends up with (``batch_size = "auto"``): each
    party's columns times the rows per column both parties require (the defaults' 8; the packing
    limit is looser at 8), at least the job's start."""
    if not job.batch_auto:
        return job.params.batch_size
    columns = max(plain.x_a.shape[1], plain.x_b.shape[1])  # A's with the intercept
    return max(job.params.batch_size, columns * max(job.min_rows_per_column, MIN_ROWS_PER_COLUMN))


# ---- measuring on the held-out users --------------------------------------------------------


def measure(qs: QualitySet, plain: Plain, run: dict[str, Any]) -> dict[str, Any]:
    """Metrics of one run's scores on the new users, against scikit-learn on the same users."""
    truth = qs.truth.set_index("id")["y"]
    y = truth.reindex(run["ids"]).to_numpy(dtype=float)
    p = run["score"]
    joint = run["model"] == "joint"
    ids, x_a, x_b, matched = _new_user_matrices(qs, plain)
    assert list(ids) == list(run["ids"]) and np.array_equal(matched, joint)
    sk_joint, sk_a = sklearn_reference(plain)
    sk_p = sk_joint.predict_proba(np.hstack([x_a[joint], x_b[joint]]))[:, 1]
    sk_all = sk_a.predict_proba(x_a)[:, 1]
    sk_all[joint] = sk_p
    observed = float(y.mean())
    result = {
        "set": qs.name,
        "users": len(y),
        "matched": int(joint.sum()),
        "auc": metrics.auc(y[joint], p[joint]),
        "sk_auc": metrics.auc(y[joint], sk_p),
        "log_loss": metrics.log_loss(y[joint], p[joint]),
        "sk_log_loss": metrics.log_loss(y[joint], sk_p),
        "auc_difference_se": paired_auc_difference_se(y[joint], p[joint], sk_p),
        "mean_predicted": float(p.mean()),
        "observed": observed,
        # The observed rate's own relative standard error: calibration cannot be resolved below it.
        "observed_relative_se": math.sqrt(observed * (1 - observed) / len(y)) / observed,
        "sk_calibration_error": float(sk_all.mean()) / observed - 1,
        "auc_unmatched": metrics.auc(y[~joint], p[~joint]) if (~joint).sum() > 1 else math.nan,
        "sk_a_auc_unmatched": (
            metrics.auc(y[~joint], sk_a.predict_proba(x_a[~joint])[:, 1])
            if (~joint).sum() > 1
            else math.nan
        ),
        "auc_all": metrics.auc(y, p),
        "reliability": reliability(y, p),
        "stopped": run["stopped"],
        "seconds": run["seconds"],
        "seconds_per_epoch": run["seconds_per_epoch"],
    }
    result["calibration_error"] = result["mean_predicted"] / result["observed"] - 1
    result["ok"] = bool(
        result["auc"] >= result["sk_auc"] - AUC_TARGET
        and result["log_loss"] <= LOG_LOSS_TARGET * result["sk_log_loss"]
        and abs(result["calibration_error"]) <= CALIBRATION_TARGET
    )
    return result


def paired_auc_difference_se(y: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """Standard error of AUC(p) - AUC(q) on the same users (DeLong et al. 1988, paired).

    Each positive's share of negatives it outranks (and each negative's of positives) per model;
    the covariance of those components over positives and negatives gives the variance of the
    difference. Shapes (n,); NaN when a class has fewer than two users.
    """
    y = np.asarray(y, dtype=float)
    pos, neg = y == 1, y != 1
    if pos.sum() < 2 or neg.sum() < 2:
        return math.nan

    def components(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sp, sn = np.sort(score[pos]), np.sort(score[neg])
        below_n = np.searchsorted(sn, score[pos], "left")
        ties_n = np.searchsorted(sn, score[pos], "right") - below_n
        below_p = np.searchsorted(sp, score[neg], "right")
        ties_p = below_p - np.searchsorted(sp, score[neg], "left")
        v10 = (below_n + 0.5 * ties_n) / len(sn)  # per positive
        v01 = 1 - (below_p - ties_p + 0.5 * ties_p) / len(sp)  # per negative
        return v10, v01

    p10, p01 = components(np.asarray(p, dtype=float))
    q10, q01 = components(np.asarray(q, dtype=float))
    var = np.var(p10 - q10, ddof=1) / len(p10) + np.var(p01 - q01, ddof=1) / len(p01)
    return float(math.sqrt(var))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Bins of equal count by predicted probability: rows, mean predicted, observed rate."""
    order = np.argsort(p, kind="stable")
    return [
        {"rows": len(part), "predicted": float(p[part].mean()), "observed": float(y[part].mean())}
        for part in np.array_split(order, bins)
        if len(part)
    ]


def _row(kind: str, r: dict[str, Any]) -> str:
    return (
        f"{r['set']:22s} {kind:9s} {r['stopped']['reason']:>9s} {r['stopped']['epochs']:>4d} "
        f"{r['auc']:.4f} {r['sk_auc']:.4f} {r['auc'] - r['sk_auc']:+.4f}±{r['auc_difference_se']:.4f} "
        f"{r['log_loss']:.4f} {r['sk_log_loss']:.4f} {r['log_loss'] / r['sk_log_loss']:.3f} "
        f"{r['mean_predicted']:.4f} {r['observed']:.4f}±{r['observed_relative_se']:.3f} "
        f"{r['calibration_error']:+.3f} {r['sk_calibration_error']:+.3f} "
        f"{r['matched']:>6d}/{r['users']:<6d} {r['auc_unmatched']:.4f} {r['sk_a_auc_unmatched']:.4f} "
        f"{'yes' if r['ok'] else 'NO':>4s}"
    )


HEADER = (
    f"{'set':22s} {'run':9s} {'stopped':>9s} {'ep':>4s} {'AUC':>6s} {'sk AUC':>6s} "
    f"{'diff ± s.e.':>14s} {'logloss':>6s} {'sk ll':>6s} {'ratio':>5s} {'mean p':>6s} "
    f"{'observed ± rel.s.e.':>12s} {'calib':>6s} {'sk cal':>6s} "
    f"{'matched/users':>13s} {'AUC unm':>7s} {'skA unm':>7s} {'ok':>4s}"
)


def _new(rows: int) -> int:
    """Held-out new users to measure a VIP set on: at least 20,000 (they cost the model nothing,
    and 400 left the observed rate with a 15% standard error and the AUC difference with 0.01)."""
    return max(NEW_USERS, rows // 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key-bits", type=int, default=512)
    parser.add_argument(
        "--encrypted",
        default="breast,default_credit,vip2000-1,vip2000-2,vip2000-3,vip2000-4,vip2000-5,vip20000-1",
        help="the sets run through the encrypted protocol (the others are replays)",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="FATE breast and one small VIP set")
    parser.add_argument(
        "--sets", default="", help="only these sets, e.g. rare,vip2000-1 (default: every set)"
    )
    args = parser.parse_args()
    only = set(filter(None, args.sets.split(",")))
    results: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        builders: list[tuple[str, Any]] = [
            ("breast", lambda out: fate_set("breast", out)),
            ("default_credit", lambda out: fate_set("default_credit", out)),
        ]
        if not args.quick:
            builders += [(name, lambda out, n=name: fate_set(n, out)) for name in FATE_DERIVED]
            for rows in (2_000, 20_000, 200_000):
                for seed in range(1, args.seeds + 1):
                    builders.append(
                        (
                            f"vip{rows}-{seed}",
                            lambda out, r=rows, s=seed: vip_set(r, s, out, new_users=_new(r)),
                        )
                    )
            builders.append(
                ("rare", lambda out: vip_set(50_000, 7, out, rare=0.02, new_users=_new(50_000)))
            )
            for rows in (6_000, 20_000):
                builders.append(
                    (f"vip{rows}-wide", lambda out, r=rows: wide_set(r, 1, out, noise_columns=290))
                )
        else:
            builders.append(
                ("vip2000-1", lambda out: vip_set(2_000, 1, out, new_users=_new(2_000)))
            )
        for key, build in builders:
            if only and key not in only:
                continue
            qs = build(tmp / key / "data")
            plain = plain_view(qs)
            replay = measure(qs, plain, replay_run(qs, plain))
            replay["run"] = "replay"
            if key in args.encrypted.split(","):
                encrypted = measure(qs, plain, encrypted_run(qs, tmp / key, args.key_bits))
                encrypted["run"] = "encrypted"
                encrypted["replay_auc_difference"] = replay["auc"] - encrypted["auc"]
                print(_row("encrypted", encrypted), flush=True)
                print(
                    f"{'':22s} {'replay':9s} AUC {replay['auc']:.4f} (replay - encrypted "
                    f"{replay['auc'] - encrypted['auc']:+.4f}), {replay['stopped']['epochs']} epochs; "
                    f"encrypted {encrypted['seconds']:.0f} s, {encrypted['seconds_per_epoch']:.2f} s/epoch",
                    flush=True,
                )
                results.append(encrypted)
            else:
                print(_row("replay", replay), flush=True)
            results.append(replay)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(results, indent=1, default=str))
    print("\nreliability (10 bins by predicted probability: predicted / observed)")
    for r in results:
        cells = " ".join(f"{b['predicted']:.3f}/{b['observed']:.3f}" for b in r["reliability"])
        print(f"{r['set']:22s} {r['run']:9s} {cells}")


if __name__ == "__main__":
    main()
