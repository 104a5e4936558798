"""How many feature orders the WDBC SHAP reasons need: agreement with a long run, and the cost per case.

``predict wdbc`` and the service give each case its largest SHAP contributions ("reasons"), from the permutation
explainer (:class:`breastdx.explain.shap_tabular.TabularExplainer`). Its values are a sample over feature orders;
this benchmark explains ``--cases`` WDBC cases (every 29th of scikit-learn's copy) with the shipped model, once with
``--reference`` orders (the values taken as exact) and then with each count of ``--permutations`` for ``--seeds``
seeds, and prints per count: the share of cases whose largest reason is the reference's, whose three largest are the
reference's three (as a set), the relative L1 error of the values (sum of absolute differences over the sum of the
reference's absolute values, mean over cases) and the seconds per case. No training; about 2 min on 2 cores.

Usage::

    python benchmarks/wdbc_shap_permutations.py [--cases 20] [--reference 100] [--permutations 1,5,10,20] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--reference", type=int, default=100)
    parser.add_argument("--permutations", default="1,5,10,20")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    from sklearn.datasets import load_breast_cancer

    from breastdx.data.wdbc import FEATURE_NAMES
    from breastdx.explain.shap_tabular import TabularExplainer
    from breastdx.inference.tabular import WDBCPredictor
    from breastdx.zoo import shipped_models
    from _machine import machine_line

    predictor = WDBCPredictor.from_dir(shipped_models()["wdbc"])
    X = load_breast_cancer().data[::29][:args.cases]

    def run(permutations: int, seed: int) -> tuple[np.ndarray, float]:
        explainer = TabularExplainer(predictor.model, predictor.background, FEATURE_NAMES, seed=seed,
                                     permutations=permutations)
        start = time.perf_counter()
        values = explainer.explain(X).values
        return values, (time.perf_counter() - start) / len(X)

    reference, ref_seconds = run(args.reference, 12345)

    def top(values: np.ndarray, k: int) -> list[set[int]]:
        return [set(np.argsort(-np.abs(row), kind="stable")[:k].tolist()) for row in values]

    rows = []
    for permutations in (int(v) for v in args.permutations.split(",")):
        first, three, error, seconds = [], [], [], []
        for seed in range(args.seeds):
            values, s = run(permutations, seed)
            first.append(np.mean([a == b for a, b in zip(top(values, 1), top(reference, 1))]))
            three.append(np.mean([a == b for a, b in zip(top(values, 3), top(reference, 3))]))
            error.append(float(np.mean(np.abs(values - reference).sum(1) / np.abs(reference).sum(1))))
            seconds.append(s)
        rows.append({"permutations": permutations, "largest_reason_agrees": round(float(np.mean(first)), 3),
                     "three_largest_agree": round(float(np.mean(three)), 3),
                     "relative_l1_error": round(float(np.mean(error)), 3),
                     "seconds_per_case": round(float(np.mean(seconds)), 4)})
        print(f"{permutations:>3} orders: largest reason as the reference's in {rows[-1]['largest_reason_agrees']:.0%} "
              f"of cases, the three largest in {rows[-1]['three_largest_agree']:.0%}; relative L1 error "
              f"{rows[-1]['relative_l1_error']:.3f}; {rows[-1]['seconds_per_case']:.3f} s a case")
    print(json.dumps({"cases": len(X), "reference_permutations": args.reference,
                      "reference_seconds_per_case": round(ref_seconds, 3), "rows": rows, **machine_line()}, indent=1))


if __name__ == "__main__":
    main()
