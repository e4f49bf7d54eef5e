"""Training entry of a minicpm-tui run directory (copied into it; needs only LLaMA-Factory).

    torchrun ... train_entry.py train.yaml [key=value ...]

LLaMA-Factory 0.9.5 removed the `cpm` (MiniCPM 1B/2B) and `cpm3` (MiniCPM3) chat templates. When the
installed version lacks one, this registers it again as 0.9.4, the last release that had them, defined it
(src/llamafactory/data/template.py there; tests/test_lf_versions.py checks the token ids against 0.9.4's
own), then hands over to LLaMA-Factory's own `run_exp()`, which
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
        # MiniCPM3: ChatML turns after a BOS prefix; the same format as `cpm4`. Tool results are `tool` turns
        # (0.9.3 and 0.9.4; 0.9.2 still rendered them as user turns).
        register(
            name="cpm3",
            format_user=formatter(slots=["<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"]),
            format_assistant=formatter(slots=["{{content}}<|im_end|>\n"]),
            format_system=formatter(slots=["<|im_start|>system\n{{content}}<|im_end|>\n"]),
            format_observation=formatter(slots=["<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n"]),
            format_prefix=empty(slots=[{"bos_token"}]),
            stop_words=["<|im_end|>"],
        )
        added.append("cpm3")
    return added


def drop_empty_param_groups_before_the_scheduler() -> None:
    """Under DeepSpeed, drop the optimizer's empty parameter groups before the LR scheduler is built.

    transformers' Trainer puts the parameters it does not decay in a group of their own, which is empty
    under LoRA (every adapter weight decays). DeepSpeed drops empty groups when it wraps the optimizer
    (0.16 and 0.19 both do); transformers 4.x (what LLaMA-Factory 0.9.2-0.9.4 pin) builds the scheduler
    before that, so the scheduler keeps one learning rate per group it saw, and torch >= 2.10 zips them
    strictly: "zip() argument 2 is longer than argument 1" at the first step (public reports: LLaMA-Factory
    issue 10144, ms-swift issue 8299; transformers 5 builds the scheduler later). Seen here with LoRA +
    ZeRO-2 on 0.9.2-0.9.4 (tests/test_lf_versions.py). Dropping the empty group first is what DeepSpeed
    does anyway. Only there: transformers 5 builds the scheduler over DeepSpeed's own optimizer, whose
    groups (ZeRO-3's sub-groups) must not be touched, and only on a plain torch optimizer.
    """
    import transformers
    from transformers import Trainer

    if int(transformers.__version__.split(".")[0]) >= 5:
        return
    original = Trainer.create_scheduler

    def create_scheduler(self, num_training_steps, optimizer=None):
        target = optimizer if optimizer is not None else self.optimizer
        plain = target is not None and type(target).__module__.startswith("torch.optim")
        if getattr(self, "is_deepspeed_enabled", False) and plain:
            target.param_groups[:] = [group for group in target.param_groups if group["params"]]
        return original(self, num_training_steps, optimizer)

    Trainer.create_scheduler = create_scheduler


def main() -> None:
    drop_empty_param_groups_before_the_scheduler()
    added = register_missing_templates()
    if added:
        print(f"[minicpm-tui] registered chat template(s) missing from this LLaMA-Factory: {', '.join(added)}",
              file=sys.stderr, flush=True)
    from llamafactory.train.tuner import run_exp

    run_exp()


if __name__ == "__main__":
    main()
