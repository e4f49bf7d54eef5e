"""Model presets and config.json loading. Parameter counts are checked against the knowledge file's figures
(shared knowledge "minicpm-and-llamafactory", MiniCPM table: 1.36B, 2.72B, 4.07B, 0.43B, 8.19B)."""

from __future__ import annotations

import json

import pytest

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.models import list_models, load_model

# name -> (billions in the knowledge table, chat format, attention)
EXPECTED = {
    "MiniCPM-1B": (1.36, "cpm", "gqa"),
    "MiniCPM-2B": (2.72, "cpm", "gqa"),
    "MiniCPM3-4B": (4.07, "cpm3", "mla"),
    "MiniCPM4-0.5B": (0.43, "cpm3", "gqa"),
    "MiniCPM4-8B": (8.19, "cpm3", "gqa"),
    "MiniCPM4.1-8B": (8.19, "cpm3", "gqa"),
}


def test_presets_match_published_parameter_counts():
    models = {m.name: m for m in list_models()}
    assert set(models) == set(EXPECTED)
    for name, (billions, chat, attention) in EXPECTED.items():
        m = models[name]
        # The table gives 2-3 significant digits: stay within 1%.
        assert m.param_count() / 1e9 == pytest.approx(billions, rel=0.01), name
        assert m.chat_format == chat and m.attention == attention and m.remote_code


def test_minicpm3_mla_arithmetic():
    m = load_model("MiniCPM3-4B")
    # q_a 2560*768 + q_b 768*40*(64+32) + kv_a 2560*(256+32) + kv_b 256*40*(64+64) + o 40*64*2560
    attn = 2560 * 768 + 768 * 3840 + 2560 * 288 + 256 * 5120 + 2560 * 2560
    mlp = 3 * 2560 * 6400
    norms = 2 * 2560 + 768 + 256
    assert m.layer_params() == attn + mlp + norms
    assert m.param_count() == 73448 * 2560 + 62 * (attn + mlp + norms) + 2560  # tied embeddings
    assert "q_proj" not in m.default_lora_targets() and "kv_b_proj" in m.default_lora_targets()
    # LoRA r=8 on every linear: 62 layers x 8 x sum(in + out)
    dims = m.linears()
    assert m.lora_params(8) == 62 * 8 * sum(a + b for a, b in dims.values())
    with pytest.raises(UserError, match="q_proj"):
        m.lora_params(8, ["q_proj"])


def test_lookup_by_alias_hub_id_and_untied_8b():
    assert load_model("openbmb/MiniCPM4-8B").name == "MiniCPM4-8B"
    assert load_model("minicpm-2b-sft-bf16").name == "MiniCPM-2B"
    assert load_model("openbmb/MiniCPM-2B-dpo-bf16").name == "MiniCPM-2B"
    m = load_model("MiniCPM4-8B")
    assert not m.tie_embeddings and m.head_dim == 128 and m.num_kv_heads == 2


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(UserError) as err:
        load_model("MiniCPM9-1T")
    assert err.value.where == "--model" and "MiniCPM4-8B" in err.value.one_line()


def test_local_config_json_llama_and_mla(tmp_path):
    llama = tmp_path / "my-llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "max_position_embeddings": 4096, "tie_word_embeddings": False}))
    m = load_model(llama)
    assert m.name == "my-llama" and not m.remote_code and m.attention == "gqa"
    assert m.param_count() == pytest.approx(6.74e9, rel=0.005)  # Llama-2-7B: 6,738,415,616
    mla = tmp_path / "cpm3" / "config.json"
    mla.parent.mkdir()
    mla.write_text(json.dumps({
        "model_type": "minicpm3", "vocab_size": 73448, "hidden_size": 2560, "intermediate_size": 6400,
        "num_hidden_layers": 62, "num_attention_heads": 40, "num_key_value_heads": 40, "q_lora_rank": 768,
        "kv_lora_rank": 256, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "max_position_embeddings": 32768, "auto_map": {"AutoModelForCausalLM": "modeling_minicpm.X"}}))
    m3 = load_model(mla)
    assert m3.attention == "mla" and m3.remote_code
    assert m3.param_count() == load_model("MiniCPM3-4B").param_count()
    # MiniCPM 2B's config (model_type minicpm, its vocabulary) means the cpm chat format
    cfg2 = tmp_path / "cpm2.json"
    cfg2.write_text(json.dumps({"model_type": "minicpm", "vocab_size": 122753, "hidden_size": 2304,
                                "intermediate_size": 5760, "num_hidden_layers": 40, "num_attention_heads": 36}))
    assert load_model(cfg2).chat_format == "cpm"


def test_bad_config_names_the_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "x"}')
    with pytest.raises(UserError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_model(tmp_path / "empty")
