"""Export entry of `minicpm-tui export` (needs only LLaMA-Factory): merge a LoRA adapter into its base.

    python export_entry.py export.yaml EXPORT_DIR

The same as `llamafactory-cli export export.yaml`, with two differences: the chat templates LLaMA-Factory
0.9.5 removed (`cpm`, `cpm3`) are registered first, as train_entry.py does for training (LLaMA-Factory
builds the template while exporting, and fails on an unknown one), and the model is written to EXPORT_DIR
(a temporary folder the caller renames into place) instead of export.yaml's export_dir. The YAML is read
here and handed to LLaMA-Factory's own `export_model(dict)`, which parses it as strictly as the CLI does
on every release from 0.9.2 to 0.9.5 (key=value overrides on the command line need 0.9.3 or newer).
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: export_entry.py export.yaml EXPORT_DIR", file=sys.stderr)
        return 2
    import yaml

    with open(sys.argv[1], encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, dict):
        print(f"{sys.argv[1]}: not a mapping", file=sys.stderr)
        return 2
    config["export_dir"] = sys.argv[2]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_entry import register_missing_templates

    added = register_missing_templates()
    if added:
        print(f"[minicpm-tui] registered chat template(s) missing from this LLaMA-Factory: {', '.join(added)}",
              file=sys.stderr, flush=True)
    from llamafactory.train.tuner import export_model

    export_model(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
