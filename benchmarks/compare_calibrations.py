"""Candidate box calibrations x face-detector setups, scored on both annotation styles.

Uses benchmarks/fit_faces.py's parts and raw-box cache (run that first). A candidate is chosen by the
mean face AP@0.5 of the two FIT parts, summed over the three setups (YuNet 640 for video, YuNet 1280 for
photos, fused 640); the CHECK parts (scenes-kaggle val, scenes-dev REPORT) are only reported::

    python benchmarks/compare_calibrations.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fit_faces as F  # noqa: E402
from maskwatch.faces.centerface import TO_YUNET_STYLE  # noqa: E402

CANDIDATES = [(1.17, 1.206, -0.02, 0.014), (1.0, 1.0, 0.0, 0.0), (1.1, 1.1, 0, 0.06), (1.15, 1.05, 0, 0.09),
              (1.1, 1.1, 0, 0.09), (1.125, 1.075, 0, 0.075), (1.15, 1.1, 0, 0.06), (1.1, 1.05, 0, 0.09)]


def main() -> None:
    parts = F.parts(250, 0)
    every = [im for v in parts.values() for im in v]
    cache = F.REPO / "runs" / "fit_faces_cache"
    raws = {c: F.raw_boxes(*c, every, cache) for c in [("yunet", 640), ("yunet", 1280), ("centerface", 640)]}
    setups = [("yunet 640", {"name": "yunet"}, raws["yunet", 640]),
              ("yunet 1280", {"name": "yunet"}, raws["yunet", 1280]),
              ("fused 640", {"fused": True, "yunet": raws["yunet", 640], "centerface": raws["centerface", 640]}, None)]
    total = {c: 0.0 for c in CANDIDATES}
    for name, braw, raw in setups:
        dets = {k: F.detections(raw, braw, v, TO_YUNET_STYLE, F.RAW_FLOOR) for k, v in parts.items()}
        for c in CANDIDATES:
            r = {k: F.face_ap(dets[k], parts[k], c) for k in parts}
            fit = 0.5 * (r["kaggle-fit"] + r["dev-fit"])
            total[c] += fit
            print(f"{name:<11} {str(c):<28} FIT mean {fit:.3f} (kaggle {r['kaggle-fit']:.3f}, dev {r['dev-fit']:.3f}) "
                  f"| CHECK kaggle-val {r['kaggle-val']:.3f}, dev-report {r['dev-report']:.3f}", flush=True)
    best = max(total, key=total.get)
    print(f"chosen by FIT (sum over setups): {best} ({total[best]:.3f})")


if __name__ == "__main__":
    main()
