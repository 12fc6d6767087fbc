import json

from conftest import run_cli


def test_reference_model_accuracy_on_all_test_images():
    proc = run_cli("evaluate", "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["samples"] == 10000
    assert result["accuracy"] >= 0.880
    assert result["params"] >= 600_000


def test_test_samples_limits_the_images_as_in_prune():
    # evaluate takes the same --test-samples spelling as prune and deploy
    result = json.loads(run_cli("evaluate", "--test-samples", "300", "--json",
                                check=True).stdout)
    assert result["samples"] == 300


def test_third_party_published_layout_model(published_trained):
    model_def, weights, data = published_trained
    proc = run_cli("evaluate", "--model-def", model_def, "--weights", str(weights),
                   "--data", str(data), "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["samples"] == 500
    assert result["accuracy"] > 0.3  # trained briefly (4 passes over 2,400 images); chance 0.1
    assert result["params"] > 10_000


def test_data_shape_mismatch_is_a_clear_error(tmp_path, published_trained):
    import numpy as np
    model_def, weights, _ = published_trained
    x = np.zeros((10, 3, 32, 32), np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=np.zeros(10), x_test=x,
             y_test=np.zeros(10))
    proc = run_cli("evaluate", "--model-def", model_def, "--weights", str(weights),
                   "--data", str(tmp_path / "rgb.npz"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
