#!/usr/bin/env bash
# The README's pictures of the reports and the Foxglove layout, made with the package's own commands:
# make demo's report, `embodied-wm eval --mcap` on the demo's bag, `python -m embodied_wm.eval.mcap_view`
# (the MCAP read back and arranged as config/foxglove_layout.json), and headless Chromium screenshots of
# the two HTML reports (Debian: apt-get install chromium). Run after `make demo` (DEMO_OUT=out/demo):
#   bash scripts/readme_images.sh [DEMO_OUT]
set -eo pipefail  # not -u: install/setup.bash reads unset variables
cd "$(dirname "$0")/.."
source env.sh
demo_out="${1:-out/demo}"
eval_out="out/readme_eval"
img=docs/img
[[ -f "$demo_out/index.html" ]] || { echo "readme_images: run make demo first ($demo_out/index.html missing)" >&2; exit 1; }
command -v chromium >/dev/null || { echo "readme_images: chromium not installed (apt-get install chromium)" >&2; exit 1; }

embodied-wm eval "$demo_out/bag/episode_00000" --model models/tiny --out "$eval_out" --mcap "$eval_out/eval.mcap"
python -m embodied_wm.eval.mcap_view "$eval_out/eval.mcap" --layout config/foxglove_layout.json --at 2.6 \
  --size 1400 860 --out "$img/foxglove_layout.png"

shot() {  # shot HTML PNG WIDTH: a full-page screenshot (tall window; Chromium headless cannot scroll)
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars \
    --virtual-time-budget=5000 --window-size="$3,9000" --screenshot="$2" "file://$(realpath "$1")" 2>/dev/null
}
tmp="$(mktemp -d)"
shot "$demo_out/index.html" "$tmp/demo.png" 1440
shot "$eval_out/report.html" "$tmp/eval.png" 1440
# Crop each screenshot to the report's header and one contact sheet, found in the screenshot by template
# matching against the sheet's own PNG (shown at its natural size: the pages are wider than the sheets).
python - "$tmp" "$demo_out" "$eval_out" "$img" <<'EOF'
import sys
from pathlib import Path

import cv2
import numpy as np

tmp, demo_out, eval_out, img = (Path(a) for a in sys.argv[1:])


def crop(shot: Path, sheet: Path, header_h: int, out: Path) -> None:
    page = cv2.imread(str(shot))
    ref = cv2.imread(str(sheet))
    band = ref[: min(200, ref.shape[0])]
    res = cv2.matchTemplate(page, band, cv2.TM_SQDIFF_NORMED)
    _, _, (x, y), _ = cv2.minMaxLoc(res)
    top = page[:header_h]
    body = page[max(0, y - 40) : y + ref.shape[0] + 8]
    gap = np.full((12, page.shape[1], 3), 255, np.uint8)
    gap[5:7] = 200  # a grey rule where the page was cut
    picture = np.concatenate([top, gap, body], axis=0)[:, : x + ref.shape[1] + 24]
    cv2.imwrite(str(out), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]})")


crop(tmp / "demo.png", demo_out / "sheets" / "sheet_01.png", 145, img / "demo_report.png")
crop(tmp / "eval.png", eval_out / "report_files" / "sheet_000_01.png", 130, img / "eval_report.png")
EOF
rm -rf "$tmp"
