import pytest
import yaml
from conftest import ROOT

from imdb_lstm.errors import PipelineError
from imdb_lstm.params import load_params

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def write(tmp_path, params):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def with_change(key, value, params=DEFAULTS):
    params = yaml.safe_load(yaml.safe_dump(params))
    *sections, last = key.split(".")
    target = params
    for section in sections:
        target = target[section]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return params


DELETE = object()


def test_the_committed_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params["backend"] == "torch"
    assert params["epochs"] == 5


@pytest.mark.parametrize("key, value, expected", [
    ("backend", "mxnet", "'backend' is 'mxnet'; it must be one of torch, paddle, tensorflow, mindspore"),
    ("epochs", 0, "'epochs' is 0; it must be an integer from 1 to 1000"),
    ("epochs", -3, "'epochs' is -3"),
    ("epochs", 2.5, "'epochs' is 2.5; it must be an integer"),
    ("epochs", "5", "'epochs' is '5'"),
    ("epochs", True, "'epochs' is True"),
    ("lr", 0, "'lr' is 0.0; it must be a number above 0"),
    ("lr", "fast", "'lr' is 'fast'"),
    ("data.seq_len", 0, "'data.seq_len' is 0; it must be an integer from 1 to 5000"),
    ("data.vocab_size", 10**9, "'data.vocab_size' is 1000000000"),
    ("data.truncate", "middle", "'data.truncate' is 'middle'; it must be one of pre, post"),
    ("data.sha256", "abc", "'data.sha256' is 'abc'; it must be 64 lower-case hex digits"),
    ("data.url", "ftp://x", "'data.url' is 'ftp://x'"),
    ("model.hidden_size", None, "'model.hidden_size' is None"),
    ("model.bidirectional", "yes", "'model.bidirectional' is 'yes'; it must be true or false"),
    ("model.pooling", "sum", "'model.pooling' is 'sum'; it must be one of mean, masked_mean, max"),
    ("model.dropout", 1, "'model.dropout' is 1.0; it must be a number from 0 up to (not including) 1"),
    ("device", "tpu", "'device' is 'tpu'; it must be one of cpu, gpu, auto"),
    ("reproducible", "yes", "'reproducible' is 'yes'; it must be true or false"),
    ("batch_size", 0, "'batch_size' is 0; it must be an integer from 1 to 65536"),
    ("seed", -1, "'seed' is -1; it must be an integer from 0 to 4294967295"),
    ("seed", 2**32, "'seed' is 4294967296"),
    ("validation", 0.6, "'validation' is 0.6; it must be a fraction from 0 (off) to 0.5"),
    ("validation", -0.1, "'validation' is -0.1"),
    ("patience", 0, "'patience' is 0; it must be an integer from 1 to 1000"),
    ("adversarial", 1.5, "'adversarial' is 1.5; it must be a fraction from 0 (off) to 1"),
    ("adversarial", -0.1, "'adversarial' is -0.1"),
    ("virtual_adversarial", 2.0, "'virtual_adversarial' is 2.0; it must be a fraction from 0 (off) to 1"),
    ("pretrain.window", 0, "'pretrain.window' is 0; it must be an integer from 1 to 50"),
    ("pretrain.use", 1, "'pretrain.use' is 1; it must be true or false"),
    ("pretrain.frozen_epochs", -1, "'pretrain.frozen_epochs' is -1"),
    ("pretrain.fine_tune_lr", 2, "'pretrain.fine_tune_lr' is 2.0; it must be a number above 0 and at most 1"),
    ("distributed.processes", 0, "'distributed.processes' is 0; it must be an integer from 1 to 1024"),
    ("distributed.comm", "mpi", "'distributed.comm' is 'mpi'; it must be one of gloo, nccl"),
    ("epochs", DELETE, "missing key 'epochs'"),
    ("model.embedding_dim", DELETE, "missing key 'model.embedding_dim'"),
])
def test_bad_values_are_named_with_what_is_allowed(tmp_path, key, value, expected):
    with pytest.raises(PipelineError) as error:
        load_params(write(tmp_path, with_change(key, value)))
    assert expected in str(error.value)


@pytest.mark.parametrize("key, suggestion", [("epoch", "epochs"), ("data.seqlen", "data.seq_len")])
def test_a_typo_is_refused_with_a_suggestion(tmp_path, key, suggestion):
    params = with_change(key, 3)
    with pytest.raises(PipelineError) as error:
        load_params(write(tmp_path, params))
    assert f"unknown key '{key}'; did you mean '{suggestion}'?" in str(error.value)


def test_an_unknown_key_lists_the_allowed_ones_and_a_section_must_be_a_mapping(tmp_path):
    path = write(tmp_path, with_change("model.zzz", 1))
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert str(error.value) == (f"{path}: unknown key 'model.zzz' (allowed: embedding_dim, hidden_size, "
                                "bidirectional, num_layers, pooling, dropout, embedding_dropout, trim_padding)")
    with pytest.raises(PipelineError) as error:
        load_params(write(tmp_path, with_change("data", [1, 2])))
    assert str(error.value) == f"{path}: data must be a mapping of keys to values"


def test_an_integer_learning_rate_is_read_as_a_float(tmp_path):
    assert load_params(write(tmp_path, with_change("lr", 1)))["lr"] == 1.0


def test_a_file_that_is_not_a_mapping_or_not_yaml_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(PipelineError, match="params.yaml: the file must be a mapping"):
        load_params(path)
    path.write_bytes(b"epochs: \xff\n")
    with pytest.raises(PipelineError, match="params.yaml is not UTF-8 text"):
        load_params(path)
    path.write_text("epochs: [1,\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(path)
    with pytest.raises(PipelineError, match="not found"):
        load_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("5E-4", 0.0005), ("1.5e-3", 0.0015), ("0.002", 0.002)])
def test_numbers_are_read_as_users_write_them(tmp_path, text, value):
    path = write(tmp_path, DEFAULTS)
    path.write_text(path.read_text().replace("lr: 0.001", f"lr: {text}"))
    assert load_params(path)["lr"] == value


@pytest.mark.parametrize("changes, expected", [
    ({"model.pooling": "last", "data.pad": "post"}, "'model.pooling' last reads the LSTM's last step, which "
     "'data.pad' post fills with padding: set data.pad to pre, or choose another pooling"),
    ({"model.pooling": "last_max_mean", "data.pad": "post"}, "'model.pooling' last_max_mean reads the LSTM's last "
     "step, which 'data.pad' post fills with padding: set data.pad to pre, or choose another pooling"),
    ({"model.embedding_dim": 64, "data.vocab_size": 64, "pretrain.use": True},
     "'model.embedding_dim' 64 with pretrain.use must be below 'data.vocab_size' (64): raise the vocabulary "
     "or narrow the embedding"),
    ({"model.bidirectional": True, "lm.use": True}, "lm.use starts the LSTM from a language model, which reads "
     "one way: set model.bidirectional to false, or lm.use to false"),
    ({"backend": "mindspore", "adversarial": 0.02}, "'adversarial' training needs a gradient inside the training "
     "step's, which tlx's mindspore step cannot take: use backend torch, paddle or tensorflow, or set adversarial "
     "to 0"),
    ({"backend": "mindspore", "virtual_adversarial": 0.02}, "'virtual_adversarial' training needs a gradient "
     "inside the training step's, which tlx's mindspore step cannot take: use backend torch, paddle or tensorflow, "
     "or set virtual_adversarial to 0"),
    ({"backend": "tensorflow", "lm.use": True, "lm.fine_tune": "ulmfit"}, "'lm.fine_tune' ulmfit changes the "
     "learning rate at every step, which tlx's tensorflow optimizer cannot: use backend torch or paddle, or set "
     "lm.fine_tune to together"),
    ({"backend": "mindspore", "lm.use": True, "lm.schedule": "slanted"}, "'lm.schedule' slanted changes the "
     "learning rate at every step, which tlx's mindspore optimizer cannot: use backend torch or paddle, or set "
     "lm.schedule to constant"),
    ({"lm.output_words": 30000, "lm.use": True}, "'lm.output_words' 30000 is more than the 20002 word ids of "
     "'data.vocab_size' 20000: lower it, or raise the vocabulary"),
    ({"backend": "paddle", "distributed.processes": 2}, "'distributed.processes' 2 needs torchrun's process group, "
     "which backend paddle cannot join: use backend torch, or set distributed.processes to 1"),
    ({"distributed.processes": 2, "distributed.comm": "nccl"}, "'distributed.comm' nccl joins processes on GPUs, "
     "and 'device' is cpu: set distributed.comm to gloo, or device to gpu"),
    ({"batch_size": 3, "distributed.processes": 4}, "'batch_size' 3 cannot be shared by 'distributed.processes' 4: "
     "raise batch_size to 4 or more, or lower distributed.processes"),
    ({"lm.use": True, "lm.batch_size": 2, "distributed.processes": 3}, "'lm.batch_size' 2 cannot be shared by "
     "'distributed.processes' 3: raise lm.batch_size to 3 or more, or lower distributed.processes"),
])
def test_rules_across_keys_are_checked(tmp_path, changes, expected):
    params = DEFAULTS
    for key, value in changes.items():
        params = with_change(key, value, params)
    with pytest.raises(PipelineError) as error:
        load_params(write(tmp_path, params))
    assert str(error.value) == f"{tmp_path / 'params.yaml'}: {expected}"
    # each rule needs both of its keys: either one alone is fine
    for key, value in changes.items():
        load_params(write(tmp_path, with_change(key, value)))


def test_messages_quote_at_most_200_characters_of_a_value(tmp_path):
    error = pytest.raises(PipelineError, load_params, write(tmp_path, with_change("backend", "x" * 50_000))).value
    assert len(str(error)) < 500 and "'xxx" in str(error) and "..." in str(error)
    nested = write(tmp_path, with_change("lr", [[[[[[list(range(1000))]]]]]]))
    assert len(str(pytest.raises(PipelineError, load_params, nested).value)) < 500


@pytest.mark.parametrize("text, message", [
    ("a: &x [1]\nb: *x\n", "aliases (*name) are not accepted here at line 2, column 4"),
    ("a: [1\n", "expected ',' or ']', but got '<stream end>' at line 2, column 1"),
    ("a: 1\n\tb: 2\n", "found character '\\t' that cannot start any token at line 2, column 1"),
    ("a: \x07\n", "unacceptable character #x0007: special characters are not allowed in \"<unicode string>\", "
                  "position 3"),  # PyYAML's reader: no problem mark, its own message
])
def test_a_yaml_error_is_one_line_naming_the_problem_and_where(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError) as refused:
        load_params(path)
    assert str(refused.value) == f"{path} is not valid YAML: {message}"


def test_what_is_not_a_params_file_is_refused_in_bounded_memory(tmp_path):
    with pytest.raises(PipelineError) as refused:
        load_params("/dev/zero")  # endless: only the first 64 KB + 1 byte is read
    assert str(refused.value) == "/dev/zero is over 64 KB: it is not this project's params file"
    with pytest.raises(PipelineError) as refused:
        load_params(tmp_path)
    assert str(refused.value) == f"cannot read {tmp_path}: Is a directory"


def test_the_lm_may_predict_every_word_id_and_no_more(tmp_path):
    for output_words, accepted in [(20002, True), (20003, False)]:
        params = DEFAULTS
        for key, value in {"lm.use": True, "model.bidirectional": False, "data.vocab_size": 20000,
                           "lm.output_words": output_words}.items():
            params = with_change(key, value, params)
        path = write(tmp_path, params)
        if accepted:
            assert load_params(path)["lm"]["output_words"] == 20002
        else:
            with pytest.raises(PipelineError, match="'lm.output_words' 20003 is more than the 20002 word ids"):
                load_params(path)
            # the tied softmax predicts every word id whatever output_words says: nothing to refuse
            assert load_params(write(tmp_path, with_change("lm.softmax", "tied", params)))["lm"]["softmax"] == "tied"


def test_alias_bombs_and_huge_files_are_refused_before_they_cost_memory(tmp_path):
    path = tmp_path / "params.yaml"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    path.write_text(bomb + "lr: *i\n")
    with pytest.raises(PipelineError, match="aliases"):
        load_params(path)
    path.write_text("# padding\n" * 10_000)
    with pytest.raises(PipelineError, match="over 64 KB"):
        load_params(path)
    path.write_text(yaml.safe_dump(DEFAULTS).ljust(1 << 16, "\n"))  # exactly the limit is still read
    assert load_params(path) == load_params(ROOT / "params.yaml")


def _keys(section, prefix=""):
    return {key for name, value in section.items()
            for key in (_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name})}


@pytest.mark.parametrize("record", sorted(p.parent.name for p in (ROOT / "records").glob("*/params.yaml")))
def test_each_committed_record_has_a_params_file_of_todays_keys(record):
    """README reproduces a record with `cp records/<record>/params.yaml params.yaml && dvc repro`: its file
    must be accepted, with every key params.yaml has (new keys go into the records with their defaults)."""
    params = load_params(ROOT / "records" / record / "params.yaml")
    assert _keys(params) == _keys(load_params(ROOT / "params.yaml"))


def test_each_process_needs_a_row_of_every_batch_and_only_the_batches_of_stages_that_run(tmp_path):
    def processes_with(changes):
        params = DEFAULTS
        for key, value in changes.items():
            params = with_change(key, value, params)
        return load_params(write(tmp_path, params))["distributed"]["processes"]

    assert processes_with({"batch_size": 4, "distributed.processes": 4}) == 4  # a row each
    assert processes_with({"lm.batch_size": 2, "distributed.processes": 3}) == 3  # lm.use false: no LM batches
    with pytest.raises(PipelineError, match="'batch_size' 1 cannot be shared by 'distributed.processes' 2"):
        processes_with({"batch_size": 1, "distributed.processes": 2})
