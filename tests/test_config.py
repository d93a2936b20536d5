"""params.yaml -> typed config: the shipped file loads, and mistakes name the key."""

from pathlib import Path

import pytest
import yaml

from landmark_lora.config import ConfigError, flatten, load_params, parse_overrides, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_shipped_params_load_with_defaults_matching():
    params = load_params(REPO / "params.yaml")
    assert params.data.resolution == 64
    assert params.validation.min_photos_per_landmark >= 1
    assert params.paths.raw == Path("data/raw")
    # the shipped file and the code defaults agree, so deleting a key changes nothing; the deliberate
    # differences: `make run` trains longer on the toy-world base, code and tests use the fast tiny one
    assert params.model.base == "toyworld" and parse_params({}).model.base == "tiny"
    # and the LoRA recipe that learns the landmarks on it, and classifiers that see its VAE (docs/results.md)
    default_run = {"model": {"base": "toyworld"},
                   "lora": {"rank": 16, "alpha": 16.0, "text_encoder": True,
                            "targets": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
                                        "ff.net.0.proj", "ff.net.2"]},
                   "train": {"max_steps": 500, "learning_rate": 0.005, "eval_every": 50, "checkpoint_every": 50},
                   "eval": {"max_prompts": 25, "classifier_vae_roundtrip": True}}
    assert params == parse_params(default_run)


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        parse_params({"data": {"resolutoin": 128}}, source="params.yaml")
    msg = str(err.value)
    assert "params.yaml: data.resolutoin: unknown key" in msg
    assert "did you mean 'resolution'" in msg


def test_unknown_section_lists_known_sections():
    with pytest.raises(ConfigError, match=r"trainn: unknown key.*") as err:
        parse_params({"trainn": {}})
    assert "known keys" in str(err.value) or "did you mean" in str(err.value)


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as err:
        parse_params({"validation": {"min_photos_per_landmark": "many"}})
    assert "validation.min_photos_per_landmark" in str(err.value)
    assert "'many'" in str(err.value)


def test_out_of_range_names_key():
    with pytest.raises(ConfigError, match=r"data\.val_fraction: .*less than 1"):
        parse_params({"data": {"val_fraction": 1.5}})


def test_cross_field_rule_explains_itself():
    with pytest.raises(ConfigError, match=r"resolution \(100\) must be a multiple of bucket_multiple \(8\)"):
        parse_params({"data": {"resolution": 100}})


def test_bad_enum_lists_choices():
    with pytest.raises(ConfigError, match=r"data\.person_detector: .*'auto' or 'center'"):
        parse_params({"data": {"person_detector": "yolo"}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(bad)


def test_overrides_apply_dotted_keys(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"resolution": 64}}))
    params = load_params(path, {"data.resolution": 128, "validation.min_photos_per_landmark": 3})
    assert params.data.resolution == 128
    assert params.validation.min_photos_per_landmark == 3
    with pytest.raises(ConfigError, match="data.bogus: unknown key"):
        load_params(path, {"data.bogus": 1})


def test_parse_overrides_reads_values_as_yaml_and_names_a_bad_pair():
    assert parse_overrides(["data.resolution=128", "lora.targets=[to_q, to_v]", " train.seed =7", "x.y="]) == {
        "data.resolution": 128, "lora.targets": ["to_q", "to_v"], "train.seed": 7, "x.y": None}
    for bad in ("data.resolution", "=3"):
        with pytest.raises(ConfigError, match="expected key=value"):
            parse_overrides([bad])


def test_flatten_gives_dotted_strings():
    flat = flatten(parse_params({}))
    assert flat["data.resolution"] == "64"
    assert flat["caption.shot_words.close_up"] == "close-up shot"
    assert all(isinstance(v, str) for v in flat.values())


def test_cli_reports_config_error_without_traceback(tmp_path, capsys):
    from landmark_lora.cli import main

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"ingest": {"min_side": -5}}))
    assert main(["--params", str(path), "ingest"]) == 2
    err = capsys.readouterr().err
    assert "ingest.min_side" in err and "Traceback" not in err
