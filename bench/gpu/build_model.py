"""Build a random-initialised Llama-shaped model with given dimensions, plus a local tokenizer.

Runs in the training Python (imports torch/transformers), never in minicpm-tui's own process:

    python build_model.py OUT_DIR --dims JSON --tokenizer-from DIR [--dtype bf16|fp32] [--device cuda|cpu]

MiniCPM-1B, MiniCPM-2B and MiniCPM4-8B are Llama-shaped (RMSNorm, SwiGLU, RoPE, GQA), so a
``LlamaForCausalLM`` with their vocabulary, widths, depth, heads and tying has their parameter count and
memory footprint; their muP scalars change values, not shapes. Nothing is downloaded. The tokenizer is the
tiny local one (it only has to encode the synthetic data; the embedding keeps the real vocabulary size,
which is what the logits' memory depends on). Weights are initialised on ``--device`` in ``--dtype`` (an 8B
model in bf16 initialises in seconds on a GPU) and saved as safetensors. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--dims", required=True, help="JSON: vocab_size, hidden_size, intermediate_size, "
                        "num_layers, num_heads, num_kv_heads, head_dim, tie_embeddings, max_position")
    parser.add_argument("--tokenizer-from", required=True, help="a folder holding a tokenizer to copy")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    dims = json.loads(args.dims)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.tokenizer_from)
    if len(tok) > dims["vocab_size"]:
        raise SystemExit(f"tokenizer has {len(tok)} tokens, more than vocab_size {dims['vocab_size']}")
    config = LlamaConfig(
        vocab_size=dims["vocab_size"],
        hidden_size=dims["hidden_size"],
        intermediate_size=dims["intermediate_size"],
        num_hidden_layers=dims["num_layers"],
        num_attention_heads=dims["num_heads"],
        num_key_value_heads=dims["num_kv_heads"],
        head_dim=dims["head_dim"],
        tie_word_embeddings=bool(dims["tie_embeddings"]),
        max_position_embeddings=int(dims["max_position"]),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        rms_norm_eps=1e-5,
        torch_dtype="bfloat16" if args.dtype == "bf16" else "float32",
    )
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    device = args.device if (args.device != "cuda" or torch.cuda.is_available()) else "cpu"
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    os.makedirs(args.out_dir, exist_ok=True)
    model.save_pretrained(args.out_dir, safe_serialization=True, max_shard_size="50GB")
    for name in TOKENIZER_FILES:
        src = os.path.join(args.tokenizer_from, name)
        if os.path.isfile(src):
            shutil.copy(src, os.path.join(args.out_dir, name))
    info = {"out_dir": os.path.abspath(args.out_dir), "params": params, "dtype": args.dtype,
            "device": device, "seconds": round(time.perf_counter() - started, 1), "dims": dims}
    with open(os.path.join(args.out_dir, "bench_model.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
