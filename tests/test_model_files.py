"""A model folder that is damaged, foreign or absurd is refused with one line before it costs memory."""
import shutil

import pytest
from helpers import CASES, PRINT_PEAK_MB, damage, edit_json

SAVE = """
from pathlib import Path
from imdb_lstm.model import SentimentLSTM, save_model, parameter_count
folder = Path({folder!r})
for options in [{{}}, {{"bidirectional": True, "num_layers": 3, "pooling": "masked_mean_max"}}, {{"num_layers": 2}}]:
    net = SentimentLSTM(37, 8, 6, **options)
    assert parameter_count(net.config) == sum(int(np.prod(w.shape)) for w in net.all_weights), options
save_model(SentimentLSTM(37, 8, 6), folder, vocabulary="v")
"""
LOAD_EACH = """
import sys
from pathlib import Path
from imdb_lstm.errors import PipelineError
from imdb_lstm.model import load_model, predict_logits
for folder in sorted(Path(sys.argv[1]).iterdir()):
    try:
        net = load_model(folder)
    except PipelineError as error:
        print(f"{folder.name}: error: {error}".replace("\\n", "|"))
    else:
        print(f"{folder.name}: loaded")
try:
    predict_logits(net, np.full((3, 5), 40))
except PipelineError as error:
    print(f"ids beyond the vocabulary: error: {error}")
""" + PRINT_PEAK_MB


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_each_bad_model_folder_is_one_error_line_in_bounded_memory(tmp_path, backend, backend_run):
    """In one process of the backend: every damage of CASES, a model saved before model.json named its
    vocabulary (it loads), and word ids beyond the model's vocabulary (evaluate after data/prepared grew
    under the model used to end in an IndexError). parameter_count matches real models of several shapes."""
    original = tmp_path / "model"
    original.mkdir()
    result = backend_run(backend, SAVE.format(folder=str(original)))
    assert result.returncode == 0, result.stderr
    folders = tmp_path / "folders"
    for how in CASES:
        shutil.copytree(original, folders / how)
        damage(folders / how, how)
    shutil.copytree(original, folders / "without trained_on")  # sorted last: the net of the ids check
    edit_json(folders / "without trained_on", lambda info: info.pop("trained_on"))
    result = backend_run(backend, f"import sys\nsys.argv[1:] = [{str(folders)!r}]\n" + LOAD_EACH)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    *lines, peak_mb = result.stdout.splitlines()
    said = dict(line.split(": ", 1) for line in lines)
    assert set(said) == {*CASES, "without trained_on", "ids beyond the vocabulary"}
    for how, message in CASES.items():
        assert said[how].startswith("error: ") and message in said[how] and "|" not in said[how], (how, said[how])
    assert said["without trained_on"] == "loaded"
    assert said["ids beyond the vocabulary"].startswith("error: word ids reach 40, but the model knows 37 words")
    assert int(peak_mb) < 1500  # the backend itself takes most of it
