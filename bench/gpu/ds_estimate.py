"""DeepSpeed's own model-states estimators for a list of configurations (run in the training Python).

    echo '[{"params": P, "largest_layer": L, "zero": 2}, ...]' | python ds_estimate.py

Prints a JSON list of per-GPU bytes (no CPU offload, one GPU). ZeRO-0 and ZeRO-2 use
``estimate_zero2_model_states_mem_needs`` (on one GPU ZeRO-2 shards nothing: 2P + 18P), ZeRO-3 uses
``estimate_zero3_model_states_mem_needs``. They count model states only (DeepSpeed's docs say so) and know
nothing of LoRA, so they are given the model's full parameter count: that is what a person would type.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    out = []
    for item in json.load(sys.stdin):
        gpus = int(item.get("gpus", 1))
        if int(item["zero"]) == 3:
            _cpu, gpu, _largest = estimate_zero3_model_states_mem_needs(
                int(item["params"]), int(item["largest_layer"]), num_gpus_per_node=gpus, cpu_offload=False,
                cpu_offload_params=False)
        else:
            _cpu, gpu = estimate_zero2_model_states_mem_needs(int(item["params"]), num_gpus_per_node=gpus,
                                                               cpu_offload=False)
        out.append(int(gpu))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
