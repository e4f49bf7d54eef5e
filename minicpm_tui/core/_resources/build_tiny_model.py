"""Build a tiny random causal LM plus a locally trained tokenizer, with no download.

Run in the training Python (it imports tokenizers/transformers/torch):
    python build_tiny_model.py OUT_DIR --chat-format cpm3|cpm [--seed 0]

The tokenizer is byte-level BPE trained on a small bilingual corpus written here, so any text
encodes; it carries the special tokens MiniCPM's chat formats need as single tokens:
  cpm  (MiniCPM 1B/2B):   <s> </s> <unk>, and "<用户>" / "<AI>" as added tokens
  cpm3 (MiniCPM3/4):      <s> </s> <unk> <|im_start|> <|im_end|> (im_end is the stop word)
Prints one JSON line describing what it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning a language model needs data, a template and a plan.",
    "Question: what is two plus two? Answer: four.",
    "Please summarise the following paragraph in one sentence.",
    "user assistant system observation function tool call result",
    "你好，世界。今天天气很好。",
    "请把下面的句子翻译成英文。",
    "机器学习模型需要数据和训练。",
    "0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' \" \\ | @ # $ % ^ & _ ~ `",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--chat-format", choices=["cpm", "cpm3"], default="cpm3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(args.seed)
    specials = ["<unk>", "<s>", "</s>"]
    extra = ["<|im_start|>", "<|im_end|>"] if args.chat_format == "cpm3" else ["<用户>", "<AI>"]

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        special_tokens=specials + extra,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)

    eos = "<|im_end|>" if args.chat_format == "cpm3" else "</s>"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token=eos,
        unk_token="<unk>",
        pad_token="<unk>",
        additional_special_tokens=extra,
    )
    fast.add_bos_token = False
    os.makedirs(args.out_dir, exist_ok=True)
    fast.save_pretrained(args.out_dir)

    vocab = len(fast)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(args.out_dir, safe_serialization=True)
    info = {
        "out_dir": os.path.abspath(args.out_dir),
        "chat_format": args.chat_format,
        "vocab_size": vocab,
        "params": sum(p.numel() for p in model.parameters()),
        "bos": fast.bos_token,
        "eos": fast.eos_token,
    }
    with open(os.path.join(args.out_dir, "tiny_model.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
