import pytest

from cookbook import config


def test_profile_reads_environment(monkeypatch):
    monkeypatch.setenv("COOKBOOK_PROFILE", "full")
    assert config.profile().name == "full"
    monkeypatch.delenv("COOKBOOK_PROFILE")
    assert config.profile().name == config.DEFAULT_PROFILE == "laptop"


def test_pick_returns_the_active_profiles_value():
    assert config.profile("smoke").pick(smoke=1, laptop=2, full=3) == 1
    assert config.profile(" Laptop ").pick(smoke=1, laptop=2, full=3) == 2


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COOKBOOK_PROFILE", "huge")
    with pytest.raises(ValueError, match="'huge' is not a profile; choose one of smoke, laptop, full"):
        config.profile()


def test_seed_everything_repeats_draws():
    import numpy as np
    import torch

    config.seed_everything(5)
    a = (np.random.rand(), torch.rand(1).item())
    config.seed_everything(5)
    assert (np.random.rand(), torch.rand(1).item()) == a


def test_paths_live_under_data():
    assert config.CACHE_DIR.parent == config.DATA_DIR
    assert config.RESULTS_DIR.parent == config.DATA_DIR
