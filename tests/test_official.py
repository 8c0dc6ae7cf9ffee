"""`avvp import-han`: a checkpoint of the official HAN code as an avvp run, with equal outputs."""

import copy
import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import avvp
from avvp.cli import main

# ---- reference: the official network -------------------------------------------------------
# Written for this test from the published definition of MMIL_Net in YapengTian/AVVP-ECCV20,
# nets/net_audiovisual.py (classes Encoder, HANLayer, CMTLayer, MMIL_Net), with the official module
# names so that its state dict has the official keys. Inputs are batch-first; the attention
# layers are sequence-first, as there. Modules the official forward never calls are built too,
# since the official checkpoints hold their weights.


class HANLayer(nn.Module):
    def __init__(self, d_model=512, nhead=1, dim_feedforward=512, dropout=0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.cm_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout11 = nn.Dropout(dropout)
        self.dropout12 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.ReLU()

    def forward(self, query, other):
        query, other = query.permute(1, 0, 2), other.permute(1, 0, 2)
        cross = self.cm_attn(query, other, other)[0]
        itself = self.self_attn(query, query, query)[0]
        query = self.norm1(query + self.dropout11(cross) + self.dropout12(itself))
        hidden = self.linear2(self.dropout(F.relu(self.linear1(query))))
        query = self.norm2(query + self.dropout2(hidden))
        return query.permute(1, 0, 2)


class CMTLayer(nn.Module):
    """Built by MMIL_Net but never called by its forward."""

    def __init__(self, d_model=512, nhead=1, dim_feedforward=512, dropout=0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.ReLU()


class Encoder(nn.Module):
    def __init__(self, layer, num_layers, norm=None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm1 = nn.LayerNorm(512)  # unused: MMIL_Net passes norm=None
        self.norm2 = nn.LayerNorm(512)
        self.norm = norm

    def forward(self, audio, visual):
        # As published: every layer reads the encoder's inputs (one layer in MMIL_Net).
        for layer in self.layers:
            out_audio, out_visual = layer(audio, visual), layer(visual, audio)
        return out_audio, out_visual


def transformer_encoder():
    layer = nn.TransformerEncoderLayer(d_model=512, nhead=1, dim_feedforward=512)
    return nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)


class MMILNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_prob = nn.Linear(512, 25)
        self.fc_frame_att = nn.Linear(512, 25)
        self.fc_av_att = nn.Linear(512, 25)
        self.fc_a = nn.Linear(128, 512)
        self.fc_v = nn.Linear(2048, 512)
        self.fc_st = nn.Linear(512, 512)
        self.fc_fusion = nn.Linear(1024, 512)
        self.audio_encoder = transformer_encoder()
        self.visual_encoder = transformer_encoder()
        self.cmt_encoder = Encoder(CMTLayer(), num_layers=1)
        self.hat_encoder = Encoder(HANLayer(), num_layers=1)

    def forward(self, audio, visual, visual_st):
        x1 = self.fc_a(audio)
        # res152 frames projected, then averaged over each segment's 8 frames.
        vid_s = self.fc_v(visual).permute(0, 2, 1).unsqueeze(-1)
        vid_s = F.avg_pool2d(vid_s, (8, 1)).squeeze(-1).permute(0, 2, 1)
        x2 = self.fc_fusion(torch.cat((vid_s, self.fc_st(visual_st)), dim=-1))
        x1, x2 = self.hat_encoder(x1, x2)
        x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)
        frame_prob = torch.sigmoid(self.fc_prob(x))
        frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
        av_att = torch.softmax(self.fc_av_att(x), dim=2)
        temporal_prob = frame_att * frame_prob
        global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
        a_prob = temporal_prob[:, :, 0, :].sum(dim=1)
        v_prob = temporal_prob[:, :, 1, :].sum(dim=1)
        return global_prob, a_prob, v_prob, frame_prob


# ---- tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(official module in eval mode, its checkpoint file), randomly initialised."""
    torch.manual_seed(0)
    network = MMILNet().eval()
    path = tmp_path_factory.mktemp("official") / "MMIL_Net.pt"
    torch.save(network.state_dict(), path)
    return network, path


@pytest.fixture(scope="module")
def converted(official, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "han-official"
    assert main(["import-han", str(official[1]), "--out", str(out)]) == 0
    return out


def test_converted_run_gives_the_official_outputs(official, converted):
    network, _ = official
    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(3, 10, 128, generator=generator)
    visual = torch.randn(3, 80, 2048, generator=generator)
    visual_st = torch.randn(3, 10, 512, generator=generator)
    with torch.no_grad():
        global_prob, a_prob, v_prob, frame_prob = network(audio, visual, visual_st)

    run = avvp.load_run(converted)
    parses = run.predict(
        {"vggish": audio.numpy(), "res152": visual.numpy(), "r2plus1d_18": visual_st.numpy()}
    )
    pairs = {
        "segment audio": (np.stack([p.segment_prob_audio for p in parses]), frame_prob[:, :, 0]),
        "segment visual": (np.stack([p.segment_prob_visual for p in parses]), frame_prob[:, :, 1]),
        "video audio": (np.stack([p.video_prob_audio for p in parses]), a_prob),
        "video visual": (np.stack([p.video_prob_visual for p in parses]), v_prob),
        # avvp clamps the global probability at 1 (see avvp.official); the parse is the same.
        "video": (np.stack([p.video_prob for p in parses]), global_prob.clamp(max=1)),
    }
    differences = {
        name: float(np.abs(ours - theirs.numpy()).max()) for name, (ours, theirs) in pairs.items()
    }
    print("max abs difference to the official module:", differences)
    assert max(differences.values()) < 1e-5, differences
    # The official evaluation's parse: segments >= 0.5 gated by the global probability >= 0.5.
    gate = (global_prob >= 0.5).numpy()[:, None, :]
    reference_audio = (frame_prob[:, :, 0] >= 0.5).numpy() & gate
    assert np.array_equal(np.stack([p.pred_audio for p in parses]), reference_audio)


def test_converted_run_folder_records_its_source(official, converted):
    _, checkpoint = official
    # and the lock file every run folder keeps (.avvp.lock)
    assert sorted(p.name for p in converted.iterdir() if not p.name.startswith(".")) == [
        "best.pt",
        "config.yaml",
        "meta.json",
    ]
    meta = json.loads((converted / "meta.json").read_text())
    assert meta["converted_from"].startswith("the official HAN code (YapengTian/AVVP-ECCV20")
    assert meta["source"]["path"] == str(checkpoint.resolve())
    assert meta["source"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    dropped = meta["dropped_unused_keys"]
    assert "hat_encoder.norm1.weight" in dropped
    assert any(key.startswith("audio_encoder.layers.0.") for key in dropped)
    assert any(key.startswith("cmt_encoder.layers.0.") for key in dropped)
    config = yaml.safe_load((converted / "config.yaml").read_text())
    assert config["features"]["frames"]["res152"] == 8
    assert config["model"]["d_model"] == 512 and config["eval"]["gate"] == "global"


def test_converted_run_evaluates_predicts_and_plots(converted, dataset, tmp_path, capsys):
    data = ["--data", str(dataset)]
    assert main(["evaluate", "--run", str(converted), "--split", "test", *data]) == 0
    assert "segment-level" in capsys.readouterr().out
    assert main(["predict", "--run", str(converted), "--out", str(tmp_path / "pred"), *data]) == 0
    assert (tmp_path / "pred" / "pred_audio.tsv").is_file()
    video = (dataset / "AVVP_test_pd.csv").read_text().splitlines()[1][:11]
    png = tmp_path / "parse.png"
    assert main(["plot", "--run", str(converted), "--video", video, "--out", str(png), *data]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_data_folder_given_at_import_is_the_run_default(official, dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["import-han", str(official[1]), "--out", str(out), "--data", str(dataset)]) == 0
    assert main(["evaluate", "--run", str(out), "--split", "val"]) == 0
    assert "segment-level" in capsys.readouterr().out


def broken_checkpoint(official, tmp_path, change):
    state = dict(official[0].state_dict())
    change(state)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda state: state.pop("fc_a.weight"), ["missing keys: fc_a.weight"]),
        (
            lambda state: state.update({"fc_extra.weight": torch.zeros(1)}),
            ["unexpected keys: fc_extra.weight"],
        ),
        (
            lambda state: (
                state.pop("hat_encoder.layers.0.cm_attn.in_proj_weight"),
                state.update({"classifier.bias": torch.zeros(25)}),
            ),
            ["unexpected keys: classifier.bias", "hat_encoder.layers.0.cm_attn.in_proj_weight"],
        ),
        (
            lambda state: state.update({"fc_a.weight": torch.zeros(512, 64)}),
            ["wrong shapes: fc_a.weight (512, 64) (expected (512, 128))"],
        ),
    ],
)
def test_unexpected_missing_or_misshaped_keys_are_listed(official, tmp_path, capsys, change, named):
    path = broken_checkpoint(official, tmp_path, change)
    out = tmp_path / "run"
    assert main(["import-han", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("avvp import-han: error: ") and error.count("\n") == 1
    assert "not a state dict of the official HAN MMIL_Net" in error
    for text in named:
        assert text in error
    assert not out.exists()


def test_unreadable_checkpoint_and_used_out_folder_are_errors(official, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    assert main(["import-han", str(text), "--out", str(tmp_path / "a")]) == 2
    assert "is not a readable PyTorch state dict" in capsys.readouterr().err
    assert main(["import-han", str(tmp_path / "gone.pt"), "--out", str(tmp_path / "a")]) == 2
    assert "official HAN checkpoint not found" in capsys.readouterr().err
    used = tmp_path / "used"
    used.mkdir()
    (used / "best.pt").write_text("a run of yours")
    assert main(["import-han", str(official[1]), "--out", str(used)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (used / "best.pt").read_text() == "a run of yours"
    assert (
        main(["import-han", str(official[1]), "--out", str(tmp_path / "a"), "--data", "LPP"]) == 2
    )
    assert "--data LPP is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
