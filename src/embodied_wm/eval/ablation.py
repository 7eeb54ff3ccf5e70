"""The modality ablation of ``embodied-wm eval --robustness --ablate``: the model under every
ABLATION_CONDITIONS camera condition with audio, touch and both masked (conditions composed in
eval.robustness), summarised as ablation.json.

Stats of predictions made within AFTER_CONTACT_S of a touch (a clean tactile reading above
CONTACT_THRESHOLD) are also kept under "<condition>@after_contact": what happens after a push (how far an
object slides) is where hidden physics shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embodied_wm.eval.robustness import ABLATION_CONDITIONS, ABLATION_MASKS, ablation_condition, describe
from embodied_wm.eval.scoring import StatsTable

AFTER_CONTACT = "@after_contact"
AFTER_CONTACT_S = 1.0
CONTACT_THRESHOLD = 0.02


def build_ablation(table: StatsTable, seed: int) -> dict[str, Any]:
    """ablation.json: per condition and mask, the model's contact AUROC, moving-region PSNR (mean over
    the horizon) and the same PSNR over predictions made within AFTER_CONTACT_S of a touch."""

    def mean(vals: Sequence[float | None] | None) -> float | None:
        good = [float(v) for v in vals or [] if v is not None]
        return round(sum(good) / len(good), 4) if good else None

    conds: dict[str, Any] = {}
    for cond in ABLATION_CONDITIONS:
        row: dict[str, Any] = {}
        for mask in ABLATION_MASKS:
            name = ablation_condition(cond, mask)
            st = table.get(name, "model").summary()
            after = table.get(name + AFTER_CONTACT, "model").summary()
            aff = (st.get("affordance") or {}).get("contact") or {}
            row[mask] = {
                "contact_auroc": aff.get("auroc"),
                "psnr_moving_mean": mean(st.get("psnr_moving")),
                "psnr_moving_after_contact": mean(after.get("psnr_moving")),
                "predictions": st.get("predictions"),
                "predictions_after_contact": after.get("predictions"),
            }
        conds[cond] = row
    return {
        "seed": seed,
        "masks": {m: list(v) for m, v in ABLATION_MASKS.items()},
        "descriptions": {c: describe(c) or "no perturbation" for c in ABLATION_CONDITIONS},
        "after_contact_s": AFTER_CONTACT_S,
        "conditions": conds,
    }
