"""Regenerate the checked-in JSON Schemas of the file formats (docs/schemas/*.schema.json)."""

import json
from pathlib import Path

from farmplug.graph import JobGraph
from farmplug.models import Shot, plan_json_schema
from farmplug.timing import TimingRecord

OUT = Path(__file__).resolve().parents[1] / "docs" / "schemas"

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    schemas = {"shot": Shot.model_json_schema(), "plan": plan_json_schema(), "graph": JobGraph.model_json_schema(),
               "timing": TimingRecord.model_json_schema()}
    for name, schema in schemas.items():
        (OUT / f"{name}.schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(f"wrote {OUT / name}.schema.json")
