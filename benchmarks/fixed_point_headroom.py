"""What finer fixed-point scales for currents, membranes and thresholds could still buy.

Each integer layer keeps its currents in units of ``s_c / 2**f``; ``f`` is the most
fractional bits (at most ``MAX_FRAC_BITS``) that keep every current, membrane and
threshold below 2**30 for the worst-case input (``quant/integer.frac_bits_for``). A scale
calibrated on data could only raise ``f`` where that worst case, never reached in practice,
holds it below the cap. This runs the integer reference twice on the validation split:
as deployed, with every spike-fed layer at the cap, and with the first (analog) layer at
the cap (what the most optimistic calibration could give each, ignoring overflow), and
reports the fractional bits per layer, the accuracies and how many predictions differ.

    python benchmarks/fixed_point_headroom.py [--weights W] [--samples 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from unittest import mock


@contextmanager
def at_cap(layers: set[str]):
    """``layers`` at MAX_FRAC_BITS whatever their worst-case bound; the others as deployed."""
    from svt_deploy.ops import synaptic  # SSA looks frac_bits_for up in quant.integer
    from svt_deploy.quant import integer

    analytic = integer.frac_bits_for

    def capped(acc_bound, bias_units, threshold_units, where):
        return integer.MAX_FRAC_BITS if where in layers else \
            analytic(acc_bound, bias_units, threshold_units, where)

    with mock.patch.object(synaptic, "frac_bits_for", capped), \
            mock.patch.object(integer, "frac_bits_for", capped):
        yield


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="default: the built-in reference model")
    p.add_argument("--data", default=None)
    p.add_argument("--samples", type=int, default=10000, help="validation images")
    p.add_argument("--precisions", nargs="+", default=["int8", "int4"])
    args = p.parse_args()

    from svt_deploy.data import load_dataset
    from svt_deploy.evaluate import predict
    from svt_deploy.loading import load_model
    from svt_deploy.prune.precision import at_precision
    from svt_deploy.quant.integer import MAX_FRAC_BITS
    from svt_deploy.quant.reference import IntegerReference, deployed_ir

    ds = load_dataset(args.data)
    loaded = load_model(None, args.weights)
    x, y = ds.split("val", args.samples)
    out = {"validation_images": len(y), "precisions": {}}
    for precision in args.precisions:
        model = at_precision(loaded, precision, ds.normalize)
        deployed = deployed_ir(model, ds.input_shape)
        bits = {n.name: n.quant.frac_bits for n in deployed.nodes
                if n.quant is not None and hasattr(n.quant, "frac_bits")}
        below = {k: v for k, v in bits.items() if v < MAX_FRAC_BITS and k != "head"}
        first = {n.name for n in deployed.nodes if n.inputs == ["input"]}
        variants = {"deployed": set(), "spike-fed layers at the cap": set(below) - first,
                    "first (analog) layer at the cap": set(below) & first}
        base = None
        rows = {}
        for label, layers in variants.items():
            if label != "deployed" and not layers:
                continue
            with at_cap(layers):
                ir = deployed_ir(model, ds.input_shape)
            pred = predict(IntegerReference(ir), ds, x).argmax(1)
            base = pred if base is None else base
            rows[label] = {"layers": sorted(layers),
                           "accuracy": round(float((pred == y).mean()), 5),
                           "predictions_that_differ": int((pred != base).sum())}
            print(f"{precision} {label}: validation accuracy {rows[label]['accuracy']:.2%}, "
                  f"{rows[label]['predictions_that_differ']} of {len(y)} predictions differ "
                  "from the deployed arithmetic", flush=True)
        out["precisions"][precision] = {"frac_bits": bits, "below_cap": below, "runs": rows}
        print(f"{precision}: {len(below)} layers below the {MAX_FRAC_BITS}-bit cap: "
              + ", ".join(f"{k} {v}" for k, v in below.items()), flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
