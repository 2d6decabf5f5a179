import dataclasses
import math

import pytest
import torch
from transformers import CLIPVisionModel

from analysis_lib.models.tiny import ClipSize, LlavaSize, toy_clip, toy_llava_from_clip
from analysis_lib.toy.pipeline import ssl_vision_model
from analysis_lib.toy.toy_recipe import toy_setup
from analysis_lib.training.ssl_encoder import (
    SSL_TRAIN,
    DinoHead,
    augmented_view,
    clip_each_gradient,
    dino_loss,
    dino_param_groups,
    ema_update,
    in_place_crop,
    initial_encoder,
    shifted,
    smoke_ssl,
    target_entropy,
    teacher_momentum,
    teacher_temperature,
    train_dino,
    updated_center,
)


def _softmax(row: list[float], temp: float) -> list[float]:
    exps = [math.exp(v / temp) for v in row]
    return [e / sum(exps) for e in exps]


def test_dino_loss_matches_a_hand_computation():
    teacher = [torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.5, 0.5, 0.0]])]
    student = [torch.tensor([[0.2, 0.1, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[-1.0, 0.0, 2.0]])]
    center = torch.tensor([0.1, -0.1, 0.0])
    terms = []
    for i, t in enumerate(teacher):
        q = _softmax([a - c for a, c in zip(t[0].tolist(), center.tolist())], 0.04)  # centred, sharpened
        for v, s in enumerate(student):
            if v != i:  # never the same view
                p = _softmax(s[0].tolist(), 0.1)
                terms.append(-sum(qk * math.log(pk) for qk, pk in zip(q, p)))
    assert len(terms) == 4
    loss = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_target_entropy_is_log_k_for_collapsed_targets_and_low_for_sharp_ones():
    same = torch.ones(4, 8)  # every image the same output: centring leaves a uniform target
    assert target_entropy(same, same.mean(0), 0.04) == pytest.approx(math.log(8), rel=1e-5)
    assert target_entropy(torch.eye(8)[:4], torch.zeros(8), 0.04) < 0.01


def test_dino_loss_sends_no_gradient_to_the_teacher():
    teacher = [torch.randn(4, 5, requires_grad=True) for _ in range(2)]
    student = [torch.randn(4, 5, requires_grad=True) for _ in range(3)]
    dino_loss(student, teacher, torch.zeros(5), 0.1, 0.04).backward()
    assert all(t.grad is None for t in teacher) and all(s.grad is not None for s in student)


def test_center_and_teacher_are_exponential_moving_averages():
    center = updated_center(torch.tensor([1.0, 0.0]), torch.tensor([[3.0, 2.0], [1.0, 4.0]]), 0.9)
    assert torch.allclose(center, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * 0 + 0.1 * 3]))
    teacher, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.75)
    for new, old, s in zip(teacher.parameters(), before, student.parameters()):
        assert torch.allclose(new, 0.75 * old + 0.25 * s)


def test_momentum_and_teacher_temperature_schedules():
    cfg = SSL_TRAIN
    assert teacher_momentum(cfg, 0) == pytest.approx(cfg.momentum) and teacher_momentum(cfg, cfg.steps) == 1.0
    assert teacher_temperature(cfg, 0) == cfg.warmup_teacher_temp
    assert teacher_temperature(cfg, cfg.teacher_temp_warmup // 2) == pytest.approx(
        (cfg.warmup_teacher_temp + cfg.teacher_temp) / 2
    )
    assert teacher_temperature(cfg, cfg.steps) == cfg.teacher_temp > cfg.warmup_teacher_temp  # sharpening


def test_weight_decay_skips_biases_and_norms_as_dinos_param_groups():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.BatchNorm1d(4))
    decayed, undecayed = dino_param_groups(net)
    assert [p.shape for p in decayed["params"]] == [(4, 3)]  # the only weight matrix
    assert len(undecayed["params"]) == 5 and undecayed["weight_decay"] == 0.0  # 3 biases, 2 norm scales
    head = DinoHead(8, 16, 4, 10, batchnorm=True)
    names = {id(p): n for n, p in head.named_parameters()}
    assert sorted(names[id(p)] for p in dino_param_groups(head)[0]["params"]) == [
        "mlp.0.weight", "mlp.3.weight", "mlp.6.weight", "prototypes"]  # fmt: skip


def test_each_gradient_is_clipped_on_its_own_by_hand():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.6, 4.8]), torch.tensor([0.6, 0.8])  # norms 6 and 1
    clip_each_gradient([a, b], 3.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.6, 4.8]) * 3 / (6 + 1e-6))  # scaled to norm 3
    torch.testing.assert_close(b.grad, torch.tensor([0.6, 0.8]))  # under the clip: untouched
    assert SSL_TRAIN.clip_grad == 3.0  # DINO's default


def test_head_is_initialised_as_dinos():
    torch.manual_seed(0)
    head = DinoHead(64, 256, 64, 256, batchnorm=True)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    for layer in linears:
        assert torch.all(layer.bias == 0) and layer.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert layer.weight.abs().max().item() < 0.02 * 6
    bound = 1 / math.sqrt(64)  # nn.Linear's default init of DINO's last layer (weight norm's direction)
    assert head.prototypes.shape == (256, 64) and head.prototypes.abs().max().item() <= bound


def test_views_keep_shape_range_and_geometry():
    gen = torch.Generator().manual_seed(0)
    pixels = (torch.rand(8, 3, 24, 24, generator=gen) - 0.5) / 0.25
    for local in (False, True):
        view = augmented_view(pixels, SSL_TRAIN, gen, local)
        assert view.shape == pixels.shape and view.min() >= -2 - 1e-5 and view.max() <= 2 + 1e-5
        assert not torch.equal(view, pixels)
    images = torch.rand(8, 3, 24, 24, generator=gen)
    assert torch.equal(shifted(images, 0, gen), images)
    dot = torch.zeros(1, 3, 24, 24)
    dot[0, :, 12, 12] = 1.0
    moved = shifted(dot, 2, gen, fill=0.0)[0, 0].nonzero().tolist()
    assert len(moved) == 1 and max(abs(moved[0][0] - 12), abs(moved[0][1] - 12)) <= 2
    crop = in_place_crop(images, 16, gen, fill=0.5)
    kept = (crop == images).all(1)  # pixels left where they were
    assert (kept.sum((1, 2)) >= 16 * 16).all() and ((crop == 0.5) | kept.unsqueeze(1)).all()


def _tiny_encoder(world) -> CLIPVisionModel:
    clip, _ = toy_clip(world, ClipSize(width=32, vision_layers=2, heads=2), seed=0)
    encoder = CLIPVisionModel(clip.config.vision_config)
    encoder.vision_model.load_state_dict(clip.vision_model.state_dict())
    return encoder


def test_tiny_training_is_deterministic_and_moves_the_teacher(world):
    cfg = dataclasses.replace(SSL_TRAIN, steps=6, batch_size=16, warmup=2, prototypes=32)
    pixels = (torch.rand(64, 3, 24, 24, generator=torch.Generator().manual_seed(1)) - 0.5) / 0.25
    runs = [train_dino(_tiny_encoder(world), pixels, cfg, seed=3, progress=False) for _ in range(2)]
    (teacher, log), (teacher_again, log_again) = runs
    assert log["loss"] == log_again["loss"] and len(log["loss"]) == 6
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), teacher_again.state_dict().values()))
    start = _tiny_encoder(world).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in teacher.state_dict().items())


def test_student_distilling_a_frozen_teacher_lowers_the_loss(world):
    frozen = dict(momentum=1.0, center_momentum=1.0, teacher_temp_warmup=0, freeze_prototypes=0)
    cfg = dataclasses.replace(SSL_TRAIN, steps=30, batch_size=32, warmup=3, prototypes=32, lr=3e-3, **frozen)
    pixels = (torch.rand(64, 3, 24, 24, generator=torch.Generator().manual_seed(1)) - 0.5) / 0.25
    _, log = train_dino(_tiny_encoder(world), pixels, cfg, seed=0, progress=False)
    assert sum(log["loss"][-5:]) < 0.9 * sum(log["loss"][:5])


def test_ssl_encoder_is_cached_and_drops_into_the_llava_vision_tower(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path))
    setup = toy_setup(clip_steps=3, smoke=True)
    cfg = smoke_ssl(SSL_TRAIN)
    encoder, folder = ssl_vision_model(setup, 0, progress=False, cfg=cfg)
    assert (folder / "model.safetensors").is_file() and (folder / "training_log.json").is_file()
    again, folder_again = ssl_vision_model(setup, 0, progress=False, cfg=cfg)
    assert folder_again == folder
    config = initial_encoder(setup.world, setup.clip_size, 0).config.to_diff_dict()
    assert all(encoder.config.to_diff_dict()[k] == v for k, v in config.items() if k != "_name_or_path")
    clip, processor = toy_clip(setup.world, setup.clip_size, 0)
    llava, _ = toy_llava_from_clip(clip, processor, LlavaSize(), 0)
    llava.model.vision_tower.load_state_dict(encoder.state_dict())  # strict: same class and shapes
