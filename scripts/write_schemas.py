"""Regenerate the checked-in JSON Schemas of the file formats (docs/schemas/*.schema.json)."""

import json
from pathlib import Path

from farmplug.graph import JobGraph
from farmplug.models import Plan, Shot
from farmplug.timing import TimingRecord

OUT = Path(__file__).resolve().parents[1] / "docs" / "schemas"

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, model in {"shot": Shot, "plan": Plan, "graph": JobGraph, "timing": TimingRecord}.items():
        (OUT / f"{name}.schema.json").write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        print(f"wrote {OUT / name}.schema.json")
