"""The fast training step (batch-first attention, fused Adam, bf16 autocast) against slow
references: an explicit softmax attention, HAN's layer through torch's own MultiheadAttention, a
per-parameter Adam loop."""

import copy
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_TRAINING

import avvp.methods.base
from avvp.cli import main
from avvp.config import ConfigError, resolve_config, validate_config
from avvp.losses import attentive_mil_loss
from avvp.models.han import HybridAttentionLayer, attend
from avvp.registry import available
from avvp.training import trainer
from avvp.training.trainer import build_model, build_optimizer, check_precision

# float32 sums over the 160 rows of a batch in another order: a few ulps of the largest term.
FLOAT_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def explicit_attention(attention: torch.nn.MultiheadAttention, query, other):
    """softmax(q k^T / sqrt(d)) v per head, written out, then the output projection."""
    width, heads = attention.embed_dim, attention.num_heads
    weights = attention.in_proj_weight.split(width)
    biases = attention.in_proj_bias.split(width)
    q, k, v = (
        (x @ w.T + b).unflatten(-1, (heads, width // heads)).transpose(1, 2)
        for x, w, b in zip((query, other, other), weights, biases, strict=True)
    )
    scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1)
    mixed = (scores @ v).transpose(1, 2).flatten(2)
    return mixed @ attention.out_proj.weight.T + attention.out_proj.bias


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("self_attention", [True, False])
def test_attend_is_the_explicit_softmax_attention(heads, self_attention):
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(16, heads, batch_first=True).eval()
    query, other = torch.randn(3, 7, 16), torch.randn(3, 5, 16)
    other = query if self_attention else other
    expected = explicit_attention(attention, query, other)
    torch.testing.assert_close(attend(attention, query, other), expected, **FLOAT_TOLERANCE)


@pytest.mark.parametrize("self_attention", [True, False])
def test_attend_draws_the_dropout_of_torchs_multihead_attention(self_attention):
    """In training, the same seed gives torch's module's output and gradients: same dropout
    draws, and the random stream left where torch's leaves it."""
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(16, 2, dropout=0.5, batch_first=True).train()
    query = torch.randn(3, 7, 16, requires_grad=True)
    other = query if self_attention else torch.randn(3, 7, 16)
    results = []
    for fast in (False, True):
        torch.manual_seed(1)
        out = attend(attention, query, other) if fast else attention(query, other, other)[0]
        grads = torch.autograd.grad(out.square().sum(), [query, attention.in_proj_weight])
        results.append((out, *grads, torch.rand(3)))
    for slow, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, slow, **FLOAT_TOLERANCE)


def reference_layer_forward(self: HybridAttentionLayer, query, other):
    """HAN's layer as before: torch's MultiheadAttention modules called as they are."""
    cross = self.cross_attention(query, other, other, need_weights=False)[0]
    itself = self.self_attention(query, query, query, need_weights=False)[0]
    query = self.norm1(query + self.dropout_cross(cross) + self.dropout_self(itself))
    hidden = self.linear2(self.dropout_ff(F.relu(self.linear1(query))))
    return self.norm2(query + self.dropout_out(hidden))


def han_batch(config, videos: int = 8):
    generator = torch.Generator().manual_seed(1)
    dims = config["features"]["dims"]
    inputs = {name: torch.randn(videos, 10, dim, generator=generator) for name, dim in dims.items()}
    return inputs, (torch.rand(videos, 25, generator=generator) < 0.2).float()


def loss_and_gradients(model, inputs, weak):
    torch.manual_seed(5)  # the dropout draws
    loss = attentive_mil_loss(model(inputs), weak)
    return loss, torch.autograd.grad(loss, list(model.parameters()))


def test_the_training_forward_and_gradients_match_torchs_attention(monkeypatch):
    """HAN at its sizes in training mode (dropout on): the same loss, bit for bit, and the same
    gradients to float rounding (the weight gradients sum the batch's rows in another order)."""
    torch.manual_seed(0)
    config = resolve_config("han")
    model = build_model(config).train()
    inputs, weak = han_batch(config)
    loss, gradients = loss_and_gradients(model, inputs, weak)
    monkeypatch.setattr(HybridAttentionLayer, "forward", reference_layer_forward)
    reference_loss, reference_gradients = loss_and_gradients(model, inputs, weak)
    assert loss.item() == reference_loss.item()
    for got, expected in zip(gradients, reference_gradients, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * scale)


def two_calls(layer: HybridAttentionLayer, audio, visual):
    """What HAN ran before forward_pair: the layer once per stream."""
    return layer(audio, visual), layer(visual, audio)


@pytest.mark.parametrize(
    ("heads", "dropout", "bf16"), [(1, 0.1, False), (2, 0.5, False), (1, 0.1, True)]
)
def test_the_stacked_streams_equal_one_layer_call_per_stream(heads, dropout, bf16):
    """In training, forward_pair draws the dropout masks the two calls draw, from the same random
    numbers, and leaves the random stream where they leave it: the outputs agree bit for bit, the
    gradients to float rounding (the shared weights' gradients summed in another order; under
    bf16, to its rounding: the gradients of bf16 and fp32 themselves differ far more)."""
    if bf16 and not trainer.cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    torch.manual_seed(0)
    layer = HybridAttentionLayer(32, heads, 48, dropout).train()
    audio, visual = torch.randn(4, 10, 32), torch.randn(4, 10, 32)
    results = []
    for forward in (two_calls, HybridAttentionLayer.forward_pair):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = forward(layer, audio, visual)
        loss = sum((output.float() * torch.arange(32)).sum() for output in outputs)
        gradients = torch.autograd.grad(loss, list(layer.parameters()))
        results.append((outputs, gradients, torch.rand(3)))
    (slow_outputs, slow_gradients, slow_next), (outputs, gradients, next_draw) = results
    assert torch.equal(next_draw, slow_next)
    for got, expected in zip(outputs, slow_outputs, strict=True):
        assert torch.equal(got, expected)
    tolerance = 2e-2 if bf16 else 1e-5
    for got, expected in zip(gradients, slow_gradients, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance * scale)


def test_the_stacked_streams_in_evaluation_draw_nothing():
    torch.manual_seed(0)
    layer = HybridAttentionLayer(32, 2, 48, 0.5).eval()
    audio, visual = torch.randn(4, 10, 32), torch.randn(4, 10, 32)
    state = torch.get_rng_state()
    for got, expected in zip(
        layer.forward_pair(audio, visual), two_calls(layer, audio, visual), strict=True
    ):
        torch.testing.assert_close(got, expected, **FLOAT_TOLERANCE)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_fused_adam_updates_as_the_per_parameter_loop():
    """The trainer's fused Adam and torch's loop, given the same gradients for three steps, end
    with parameters equal to 1e-8 (steps of the learning rate, 3e-4). Adam divides each
    gradient by its own running size, so elements whose gradient is near its epsilon (1e-8)
    turn float rounding of the gradient into visible differences; this test feeds both the same
    gradients, the test above bounds how much the gradients differ."""
    torch.manual_seed(0)
    config = resolve_config("han")
    fused_model = build_model(config)
    loop_model = copy.deepcopy(fused_model)
    fused = build_optimizer(fused_model, config)
    assert fused.defaults["fused"]
    loop = torch.optim.Adam(loop_model.parameters(), lr=config["optim"]["lr"], foreach=False)
    for _ in range(3):
        for first, second in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
            first.grad = torch.randn_like(first)
            second.grad = first.grad.clone()
        fused.step()
        loop.step()
    for got, expected in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-8)


BF16 = pytest.mark.skipif(not trainer.cpu_has_bf16(), reason="this CPU has no native bf16")


@BF16
def test_a_bf16_run_trains_with_fp32_probabilities_and_losses(dataset, tmp_path, monkeypatch):
    seen = []
    original = avvp.methods.base.attentive_mil_loss

    def recording_loss(output, *args, **kwargs):
        loss = original(output, *args, **kwargs)
        seen.append(
            (
                torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"),
                frozenset(
                    {output.segment_prob.dtype, output.video_prob.dtype, output.features.dtype}
                ),
                loss.dtype,
                bool(torch.isfinite(loss)),
            )
        )
        return loss

    monkeypatch.setattr(avvp.methods.base, "attentive_mil_loss", recording_loss)
    out = tmp_path / "run"
    flags = ["--data", str(dataset), "--out", str(out), *TINY_TRAINING, "train.precision=bf16"]
    assert main(["train", "--method", "han", *flags]) == 0
    assert seen
    # The forward ran under bf16 autocast; what the pooling gave the loss, and the loss, fp32.
    assert set(seen) == {(torch.bfloat16, frozenset({torch.float32}), torch.float32, True)}
    assert (out / "test_metrics.json").is_file()


def test_precision_is_validated_by_name():
    config = resolve_config("han", overrides=["train.precision=fp16"])
    with pytest.raises(ConfigError, match=r"train\.precision 'fp16'; expected one of fp32, bf16"):
        validate_config(config)


def test_bf16_on_a_cpu_without_it_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"train\.precision=bf16 but this CPU has no native"):
        check_precision("bf16", torch.device("cpu"))
    check_precision("fp32", torch.device("cpu"))


def test_training_imports_no_scikit_learn():
    """scikit-learn (~90 MB of a training process's memory) loads only when PPL clusters."""
    code = (
        "import sys; from avvp import registry; registry.available('method'); "
        "import avvp.methods.ppl; print('sklearn' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def record_at_each_loss(monkeypatch, probe) -> list:
    """Patch the training loss to note ``probe()`` at every call; returns the notes."""
    seen = []
    original = avvp.methods.base.attentive_mil_loss

    def recording_loss(*args, **kwargs):
        seen.append(probe())
        return original(*args, **kwargs)

    monkeypatch.setattr(avvp.methods.base, "attentive_mil_loss", recording_loss)
    return seen


def test_training_runs_on_one_thread_unless_omp_num_threads_is_set(dataset, tmp_path, monkeypatch):
    threads_seen = record_at_each_loss(monkeypatch, torch.get_num_threads)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        flags = ["--data", str(dataset), "--out", str(tmp_path / "one"), *TINY_TRAINING]
        assert main(["train", "--method", "han", *flags]) == 0
        assert set(threads_seen) == {1}
        assert torch.get_num_threads() == 2  # restored after the run
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        with trainer.training_threads():
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


FLUSHABLE = pytest.mark.skipif(
    not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals"
)


@FLUSHABLE
def test_flushing_denormals_holds_inside_the_block_only():
    subnormal = torch.tensor([3e-39, -1e-40, 1.0])
    assert not trainer.denormals_flushed()
    assert subnormal.mul(1.0)[0] != 0  # IEEE gradual underflow outside the block
    with trainer.flushing_denormals(True):
        assert trainer.denormals_flushed()
        assert subnormal.mul(1.0).tolist() == [0.0, 0.0, 1.0]
    assert not trainer.denormals_flushed()
    with trainer.flushing_denormals(False):
        assert not trainer.denormals_flushed()


@FLUSHABLE
def test_a_mode_set_before_the_block_is_kept_after_it():
    torch.set_flush_denormal(True)
    try:
        with trainer.flushing_denormals(True):
            pass
        assert trainer.denormals_flushed()
    finally:
        torch.set_flush_denormal(False)


@FLUSHABLE
@pytest.mark.parametrize("flush", [True, False])
def test_training_steps_flush_denormals_as_configured(dataset, tmp_path, monkeypatch, flush):
    modes_seen = record_at_each_loss(monkeypatch, trainer.denormals_flushed)
    flags = ["--data", str(dataset), "--out", str(tmp_path / "run"), *TINY_TRAINING]
    assert main(["train", "--method", "han", *flags, f"train.flush_denormal={flush}"]) == 0
    assert modes_seen and set(modes_seen) == {flush}
    assert not trainer.denormals_flushed()  # validation, testing and the caller: unchanged


def test_flush_denormal_is_validated():
    with pytest.raises(ConfigError, match=r"'train\.flush_denormal' expects bool, got 'sometimes'"):
        resolve_config("han", overrides=["train.flush_denormal=sometimes"])


@BF16
@pytest.mark.parametrize("name", available("model"))
def test_every_model_pools_in_fp32_under_bf16_autocast(name):
    """The bf16 contract (README) for every registered model: the encoder's matmuls in bf16,
    the pooling's probabilities and the features the methods read in fp32."""
    config = resolve_config("han", overrides=[f"model.name={name}"])
    model = build_model(config).train()
    inputs, _ = han_batch(config, videos=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(inputs)
    dtypes = {value.dtype for value in output.__dict__.values()}
    assert dtypes == {torch.float32}
