"""Mutation fuzzing of saved models (issue 9): every mutated file loads or is refused.

Each seed names one mutation (tests/mutations.py) of one of a few clean files Keras saved.
Every mutated file is loaded, and predicted with, in a worker process with an address-space cap
and a timeout (tests/sandbox.py). Allowed outcomes: it loads (and predicts finite output with
the batch it was given, or refuses at predict with a ReflstmError), or load raises ReflstmError.
Any other exception type, a hang, a MemoryError or a dead worker, or a weight holding a value
planted in a file outside the model, fails the test with the seeds to replay.

CI runs SEEDS_IN_CI mutations; `pytest tests/test_fuzz.py --campaign N -s` runs N and prints
the outcome counts. REFLSTM_FUZZ_SEEDS=12,57 replays just those seeds.
"""

import collections
import os
import time

import pytest

import hostile_files as H
import mutations
from sandbox import FAILURES, Sandbox

SEEDS_IN_CI = 500
# Mutations that make the file reach outside itself: loading one at all means a link, a virtual
# dataset or external storage was followed (a missing virtual source reads as zeros).
OUTSIDE = ("h5:external_storage", "h5:external_link", "h5:virtual", "h5:virtual_missing")
BASES = [("sequential", "keras3-keras"), ("branches", "keras3-keras"), ("embedding", "keras3-h5"),
         ("branches", "tf_keras-h5")]
TIMEOUT = 10.0  # seconds per load; clean files load in well under one
# Budgets below the worker's 1 GiB cap, and a time bound below TIMEOUT: where reflstm enforces
# them, a file over budget is refused before it can blow the cap or the timeout.
LIMITS = dict(max_weight_bytes=200_000_000, max_seconds=3.0)
GROUPS = {"loaded": "correct load", "refused_at_predict": "correct load", "refused": "ReflstmError",
          "error": "other exception type", "error_at_predict": "other exception type",
          "bad_output": "wrong output", "hang": "hang", "memory": "memory blow-up", "crash": "crash",
          "secret": "read outside the file"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    return [H.save_clean(name, origin, root) for name, origin in BASES], H.Secrets(root / "secrets")


def seeds(config):
    chosen = os.environ.get("REFLSTM_FUZZ_SEEDS")
    if chosen:
        return [int(s) for s in chosen.split(",")]
    return range(config.getoption("--campaign") or SEEDS_IN_CI)


def test_mutated_files_load_or_are_refused(bases, tmp_path, request):
    """Every mutation (bytes, zip, HDF5 structure, JSON) either loads correctly or is refused."""
    cleans, secrets = bases
    counts, kinds, errors, failures = collections.Counter(), collections.Counter(), collections.Counter(), {}
    started = time.perf_counter()
    with Sandbox() as sandbox:
        for seed in seeds(request.config):
            clean = cleans[seed % len(cleans)]
            dest = tmp_path / f"mutant.{clean.fmt}"
            try:
                kind = mutations.mutate(seed, clean, dest, secrets)
            except Exception as error:  # a mutation that does not apply to this file: skip it
                counts["mutation not applicable"] += 1
                kinds[f"(n/a) {type(error).__name__}: {str(error)[:60]}"] += 1
                continue
            # JSON mutations may make another valid model (return_sequences flipped): then only
            # the batch is fixed, not the output shape.
            shapes = None if kind.startswith("json") else clean.output_shapes
            result = sandbox.load(dest, limits=LIMITS, inputs=clean.inputs, output_shapes=shapes, batch=4,
                                  timeout=TIMEOUT)
            if kind.split("@")[0] in OUTSIDE and result.kind in ("loaded", "refused_at_predict"):
                result.kind, result.message = "secret", f"loaded although the file reaches outside ({result.kind})"
            counts[GROUPS[result.kind]] += 1
            if result.error_type and result.kind not in ("refused", "refused_at_predict"):
                errors[f"{result.error_type} ({result.kind})"] += 1
            kinds[kind.split("@")[0] + " -> " + result.kind] += 1
            if result.kind in FAILURES:
                line = f"seed {seed} ({BASES[seed % len(BASES)]}, {kind}): {result}".replace("\n", " | ")
                failures.setdefault(GROUPS[result.kind], []).append(line[:900])
            dest.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    print(f"\n{sum(counts.values())} mutations in {elapsed:.1f} s")
    for group, count in counts.most_common():
        print(f"  {count:6d}  {group}")
    print("  exception types other than ReflstmError:")
    for error, count in errors.most_common():
        print(f"    {count:5d}  {error}")
    print("  by kind:")
    for kind, count in sorted(kinds.items()):
        print(f"    {count:5d}  {kind}")
    report = []
    for group, lines in sorted(failures.items(), key=lambda item: len(item[1])):
        seeds_text = ",".join(line.split()[1] for line in lines)
        report += [f"{group}: {len(lines)} (REFLSTM_FUZZ_SEEDS={seeds_text})"] + lines[:6]
    assert not failures, "mutations that neither loaded nor were refused:\n" + "\n".join(report)
