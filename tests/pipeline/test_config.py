"""The configuration model: strict, versioned, errors that name the key."""

import pytest

from cardiotwin.pipeline.config import Config, ConfigError, config_hash, load_config


def test_defaults_are_a_complete_configuration(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("config_version: 1\n")
    assert load_config(path) == Config()
    assert load_config(None) == Config()


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("config_version: 1\nsimulation:\n  dt_ms: fast\n  backnd: cpu\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "c.yaml" in message
    assert "unknown key 'simulation.backnd'" in message
    assert "'simulation.dt_ms'" in message and "'fast'" in message


def test_version_and_missing_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"config_version": 2}')
    with pytest.raises(ConfigError, match="config_version 2 is not supported"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_hash_changes_with_any_setting(tmp_path):
    a = Config()
    b = Config.model_validate({"simulation": {"dt_ms": 0.02}})
    assert config_hash(a) == config_hash(Config()) != config_hash(b)
    # where the files are is not what is computed: the workflow section is left out
    moved = Config.model_validate({"workflow": {"results": "elsewhere"}})
    assert config_hash(moved) == config_hash(a)
    assert config_hash(moved, include_workflow=True) != config_hash(a, include_workflow=True)


def test_activation_levels_per_chamber_and_a_rearm_above_the_threshold_is_named(tmp_path):
    detection = Config().induction.detection
    # atria: remodelled Courtemanche cells peak below 0 mV in tissue (test_tissue.py);
    # ventricles: premature border-zone beats do too (test_fast_tissue.py)
    assert detection.levels_mv("atrium") == (-40.0, -60.0)
    assert detection.levels_mv("ventricle") == (-40.0, -60.0)
    path = tmp_path / "c.yaml"
    for key in ("atrial_rearm_mv", "rearm_mv"):
        path.write_text(f"induction:\n  detection:\n    {key}: -30\n")
        with pytest.raises(ConfigError, match=rf"\b{key} \(-30.0 mV\) must lie below"):
            load_config(path)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("induction:\n  pes:\n    first_coupling_ms: 140\n", r"\(140 ms\) is below min_coupling"),
        ("induction:\n  pes:\n    first_coupling_ms: 600\n", "is not shorter than s1_cycle"),
        ("induction:\n  rapid_pacing:\n    last_cycle_length_ms: 320\n", "the burst ramps down"),
        ("induction:\n  detection:\n    capture_probe_mm: [4, 2]\n", "capture_probe_mm must be"),
    ],
)  # fmt: skip
def test_protocols_that_cannot_run_are_refused_with_the_configuration(tmp_path, yaml_text, message):
    # before any job runs (the workflow checks the configuration first), not after meshing
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_stage_reads_only_its_sections_and_hashes_only_them():
    from cardiotwin.pipeline.config import (
        STAGE_SECTIONS,
        StageSectionError,
        config_from_dict,
        config_hash,
        for_stage,
    )

    config = config_from_dict({"ablation": {"lesion_radius_mm": 3.5}})
    other = config_from_dict({"ablation": {"lesion_radius_mm": 5.0}})
    induce = for_stage(config, "induce")
    assert induce.tissue == config.tissue and induce.induction == config.induction
    with pytest.raises(StageSectionError, match="'ablation.lesion_radius_mm'.*STAGE_SECTIONS"):
        induce.ablation.lesion_radius_mm  # noqa: B018
    # the hash of what an induction reads: the same whether restricted or not, blind to the
    # ablation section, not to an induction setting
    sections = STAGE_SECTIONS["induce"]
    assert config_hash(induce) == config_hash(config, sections=sections)
    assert config_hash(induce) == config_hash(for_stage(other, "induce"))
    assert config_hash(config) != config_hash(other)
    pes = config_from_dict({"induction": {"pes": {"first_coupling_ms": 290}}})
    assert config_hash(for_stage(pes, "induce")) != config_hash(induce)
    # a restricted configuration cannot be hashed over a section it does not hold
    with pytest.raises(StageSectionError):
        config_hash(induce, sections=("ablation",))
    # the stages not named read everything
    assert for_stage(config, "ablate") is config
