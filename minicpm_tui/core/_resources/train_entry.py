"""Training entry of a minicpm-tui run directory (copied into it; needs only LLaMA-Factory).

    torchrun ... train_entry.py train.yaml [key=value ...]

LLaMA-Factory 0.9.5 removed the `cpm` (MiniCPM 1B/2B) and `cpm3` (MiniCPM3) chat templates. When the
installed version lacks one, this registers it again, exactly as LLaMA-Factory 0.9.2-0.9.4 defined it
(src/llamafactory/data/template.py there), then hands over to LLaMA-Factory's own `run_exp()`, which
reads the YAML path and the key=value overrides from sys.argv as `llamafactory-cli train` does.
On a version that still has them, nothing is registered and the files behave the same.
"""

from __future__ import annotations

import sys


def register_missing_templates() -> list[str]:
    """Register `cpm` / `cpm3` where the installed LLaMA-Factory lacks them; return the names added."""
    from llamafactory.data import template as lf_template

    formatter = getattr(lf_template, "StringFormatter", None)
    empty = getattr(lf_template, "EmptyFormatter", None)
    if formatter is None or empty is None:  # very old layouts keep them in .formatter
        from llamafactory.data.formatter import EmptyFormatter as empty  # noqa: N813
        from llamafactory.data.formatter import StringFormatter as formatter  # noqa: N813
    register = getattr(lf_template, "register_template", None) or lf_template._register_template
    added = []
    if "cpm" not in lf_template.TEMPLATES:
        # MiniCPM 1B/2B: "<s><用户>{query}<AI>{answer}</s>"
        register(
            name="cpm",
            format_user=formatter(slots=["<用户>{{content}}<AI>"]),
            format_prefix=empty(slots=[{"bos_token"}]),
        )
        added.append("cpm")
    if "cpm3" not in lf_template.TEMPLATES:
        # MiniCPM3: ChatML turns after a BOS prefix; the same format as `cpm4`.
        register(
            name="cpm3",
            format_user=formatter(slots=["<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"]),
            format_assistant=formatter(slots=["{{content}}<|im_end|>\n"]),
            format_system=formatter(slots=["<|im_start|>system\n{{content}}<|im_end|>\n"]),
            format_prefix=empty(slots=[{"bos_token"}]),
            stop_words=["<|im_end|>"],
        )
        added.append("cpm3")
    return added


def main() -> None:
    added = register_missing_templates()
    if added:
        print(f"[minicpm-tui] registered chat template(s) missing from this LLaMA-Factory: {', '.join(added)}",
              file=sys.stderr, flush=True)
    from llamafactory.train.tuner import run_exp

    run_exp()


if __name__ == "__main__":
    main()
