"""Checks avvp's ResNet-152 and R(2+1)D-18 against torchvision's; writes the key manifest.

Not a test: torchvision does not load beside avvp's torch, so this runs once, by hand, in a
throwaway environment that has it (``pip install torch torchvision`` in a venv), with avvp's
sources on the path:

    PYTHONPATH=src python tests/data/torchvision_check.py [FRAMES.npy]

It writes tests/data/torchvision_state_dicts.json (every state-dict key and shape of
torchvision's ``resnet152()`` and ``r2plus1d_18()``, in order; tests/test_extract_visual.py checks
avvp's modules against it) and prints the largest absolute differences between torchvision's
networks and avvp's loaded with the same random weights, on the same inputs. FRAMES.npy, (N, H,
W, 3) uint8 video frames, adds the difference between avvp's frame preparation and torchvision's
transforms on PIL images (what the LLP release ran).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from avvp.extraction import visual

MANIFEST = Path(__file__).with_name("torchvision_state_dicts.json")


def randomise_batch_norms(net: torch.nn.Module) -> None:
    # Fresh batch norms are identities in eval mode; random statistics make the check mean it.
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)


def compare(name: str, reference: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor) -> None:
    randomise_batch_norms(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    ours.eval()
    with torch.inference_mode():
        logits = reference(x)
        diff = (logits - ours(x)).abs().max().item()
        reference.fc = torch.nn.Identity()
        features = reference(x)
        feature_diff = (features - ours.features(x)).abs().max().item()
    print(
        f"{name}: logits max |diff| {diff:.3g} (max |logit| {logits.abs().max().item():.3g}); "
        f"features max |diff| {feature_diff:.3g} (max |feature| {features.abs().max().item():.3g})"
    )


def compare_preparation(frames: np.ndarray) -> None:
    cases = [
        ("res152 crop", transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])),
        ("res152 squash", transforms.Resize((224, 224))),
        ("r2plus1d_18 squash", transforms.Resize((112, 112))),
        (
            "r2plus1d_18 crop",
            transforms.Compose([transforms.Resize((128, 171)), transforms.CenterCrop(112)]),
        ),
    ]
    for label, transform in cases:
        name, option = label.split()
        extractor = visual.ResNet152 if name == "res152" else visual.R2Plus1D18
        resize, crop = extractor.resizes[option]
        normalise = transforms.Normalize(extractor.mean, extractor.std)
        reference = torch.stack(
            [
                normalise(transforms.functional.to_tensor(transform(Image.fromarray(f))))
                for f in frames
            ]
        )
        ours = visual.prepare_frames(frames, resize, crop, extractor.mean, extractor.std)
        print(f"{label} preparation (PIL): max |diff| {(reference - ours).abs().max().item():.3g}")
    # torchvision's Kinetics preset resizes tensors, not PIL images: how far that is.
    preset = torchvision.models.video.R2Plus1D_18_Weights.KINETICS400_V1.transforms()
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)
    reference = preset(video).permute(1, 0, 2, 3)
    ours = visual.prepare_frames(frames, (128, 171), 112, visual.KINETICS_MEAN, visual.KINETICS_STD)
    diff = (reference - ours).abs().max().item()
    print(f"r2plus1d_18 crop vs the tensor preset: max |diff| {diff:.3g}")


def _lines(entries: list) -> str:
    return "[\n" + ",\n".join(f"  {json.dumps(entry)}" for entry in entries) + "\n]"


def main() -> None:
    torch.manual_seed(0)
    models = torchvision.models
    manifest = {"torchvision": torchvision.__version__}
    for name, reference in [
        ("resnet152", models.resnet152()),
        ("r2plus1d_18", models.video.r2plus1d_18()),
    ]:
        manifest[name] = [[key, list(value.shape)] for key, value in reference.state_dict().items()]
    # One key a line: a diff of the file reads as a diff of the architecture.
    MANIFEST.write_text(
        "{\n"
        + ",\n".join(
            f"{json.dumps(name)}: "
            + (json.dumps(value) if isinstance(value, str) else _lines(value))
            for name, value in manifest.items()
        )
        + "\n}\n"
    )
    print(f"wrote {MANIFEST}")

    compare("resnet152", models.resnet152(), visual.ResNet152Net(), torch.randn(4, 3, 224, 224))
    compare(
        "r2plus1d_18",
        models.video.r2plus1d_18(),
        visual.R2Plus1D18Net(),
        torch.randn(2, 3, 8, 112, 112),
    )
    if len(sys.argv) > 1:
        compare_preparation(np.load(sys.argv[1]))


if __name__ == "__main__":
    main()
