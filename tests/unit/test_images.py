"""Image observations: specs, CNN torsos, uint8 through transitions, replay and inbound checks,
torch acting policies and a serial DQN run on MinAtar."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.inbound import Limits, check_rollout, check_transitions, env_output_problem
from soulsai_ray.models import ImageActorCritic, QNetwork, actor_critic, state_dict_to_numpy
from soulsai_ray.observations import ObsSpec
from soulsai_ray.policies import NumpyQNetwork, actor_critic_policy, q_policy
from soulsai_ray.replay import PrioritizedReplayBuffer, ReplayBuffer
from soulsai_ray.replay_factory import replay_bytes
from soulsai_ray.torsos import ImpalaCNN, NatureCNN, conv_torso
from soulsai_ray.transitions import EnvStep, NStepAccumulator, RolloutBatch, TransitionBatch

SOULS = ObsSpec.image(90, 160, 3)
ATARI = ObsSpec.image(84, 84, 4)
MINATAR = ObsSpec.image(10, 10, 4, high=1)


def _images(obs: ObsSpec, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, int(obs.high) + 1, (n, *obs.shape), dtype=np.uint8)


# specs


def test_obs_spec_describes_vectors_and_images_and_refuses_the_rest():
    assert ObsSpec.of(8) == ObsSpec.vector(8) == ObsSpec((8,), "float32")
    assert SOULS.size == 43_200 and SOULS.nbytes == 43_200 and ObsSpec.vector(8).nbytes == 32
    assert (
        SOULS.describe() == "90x160x3 uint8 image"
        and ObsSpec.of(8).describe() == "8 float32 values"
    )
    assert MINATAR.zeros(2, 3).shape == (2, 3, 10, 10, 4) and MINATAR.zeros(1).dtype == np.uint8
    with pytest.raises(ValueError, match="vectors"):
        ObsSpec((4, 4), "float32")
    with pytest.raises(ValueError, match="images"):
        ObsSpec((4,), "uint8")
    with pytest.raises(ValueError, match="dtype"):
        ObsSpec((4,), "float64")


# networks


def _expected_features(torso: str, obs: ObsSpec) -> int:
    if torso == "mlp":
        return obs.size
    h, w = obs.shape[:2]
    if torso == "minatar_cnn":
        return 16 * (h - 2) * (w - 2)
    if torso == "nature_cnn":
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        return 64 * h * w
    for _ in range(3):  # each IMPALA stage halves the image, rounding up
        h, w = (h + 1) // 2, (w + 1) // 2
    return 32 * h * w


FITTING = [
    pytest.param(torso, obs, id=f"{torso}-{'x'.join(map(str, obs.shape))}")
    for torso in ("mlp", "nature_cnn", "impala_small", "minatar_cnn")
    for obs in (SOULS, ATARI, MINATAR)
    if not (torso == "nature_cnn" and obs is MINATAR)  # refused: see the test below
]


@pytest.mark.parametrize(("torso", "obs"), FITTING)
def test_every_torso_gives_q_values_and_policy_outputs_for_every_image_shape(torso, obs):
    module, width = conv_torso(torso, obs)
    assert width == _expected_features(torso, obs)
    images = torch.as_tensor(_images(obs, 5))
    if module is not None:
        assert module(images.float()).shape == (5, width)
    q = QNetwork(obs, 6, [32, 16], dueling=True, layer_norm=True, torso=torso)
    assert q(images).shape == (5, 6) and q(images).dtype == torch.float32
    ppo = actor_critic(PPOConfig(torso=torso, hidden_sizes=[32], normalize_obs=False), obs, 6)
    assert isinstance(ppo, ImageActorCritic)
    logits, values = ppo(images)
    assert logits.shape == (5, 6) and values.shape == (5,)


def test_nature_cnn_refuses_small_images_and_cnns_refuse_vectors_naming_the_way_out():
    with pytest.raises(ValueError, match=r"at least 36x36.*10x10x4 uint8 image.*impala_small"):
        QNetwork(MINATAR, 3, [8], dueling=True, torso="nature_cnn")
    with pytest.raises(ValueError, match=r"3x3 kernels need images of at least 3x3.*2x5x1"):
        QNetwork(ObsSpec.image(2, 5, 1), 3, [8], dueling=True, torso="minatar_cnn")
    with pytest.raises(ValueError, match=r"needs image observations.*8 float32 values"):
        QNetwork(8, 3, [8], dueling=True, torso="impala_small")
    with pytest.raises(ValueError, match="needs image observations"):
        actor_critic(PPOConfig(torso="nature_cnn"), 8, 3)
    with pytest.raises(ValueError, match="normalize_obs works on vector observations"):
        QNetwork(SOULS, 3, [8], dueling=True, normalize_obs=True, torso="nature_cnn")
    with pytest.raises(ValueError, match="normalize_obs works on vector observations"):
        actor_critic(PPOConfig(torso="impala_small"), MINATAR, 3)  # PPO normalizes by default
    NatureCNN(3)(torch.zeros(1, 36, 36, 3))  # the smallest image it fits
    assert ImpalaCNN(4)(torch.zeros(1, 1, 1, 4)).shape == (1, 32)


def test_images_are_scaled_by_one_over_high_inside_the_network():
    zero_one = ObsSpec.image(4, 5, 2, high=1)
    full = ObsSpec.image(4, 5, 2, high=255)
    net_one = QNetwork(zero_one, 3, [8], dueling=False)
    net_full = QNetwork(full, 3, [8], dueling=False)
    net_full.load_state_dict(net_one.state_dict())
    planes = _images(zero_one, 4)
    expected = net_one(torch.as_tensor(planes.astype(np.float32)))
    torch.testing.assert_close(net_one(torch.as_tensor(planes)), expected)
    torch.testing.assert_close(net_full(torch.as_tensor(planes * np.uint8(255))), expected)


def test_vector_networks_keep_their_state_dict_keys():
    keys = set(QNetwork(4, 2, [8], dueling=True).state_dict())
    assert keys == {"body.0.weight", "body.0.bias", "advantage.weight", "advantage.bias"} | {
        "value.weight",
        "value.bias",
    }


# acting


@pytest.mark.parametrize("torso", ["mlp", "impala_small"])
def test_torch_q_policy_acts_like_the_learner_network_and_refuses_weights_that_do_not_fit(torso):
    cfg = DQNConfig(torso=torso, hidden_sizes=[16])
    net = QNetwork(MINATAR, 3, [16], dueling=True, torso=torso)
    policy = q_policy(cfg, MINATAR, 3)
    assert not policy.loaded
    weights = state_dict_to_numpy(net)
    for array in weights.values():
        array.setflags(write=False)  # like zero-copy arrays from the object store
    policy.load(weights)
    images = _images(MINATAR, 4)
    np.testing.assert_allclose(policy(images), net(torch.as_tensor(images)).detach().numpy())
    other = state_dict_to_numpy(
        QNetwork(ObsSpec.image(10, 10, 6, high=1), 3, [16], True, torso=torso)
    )
    with pytest.raises(RuntimeError, match="do not fit"):
        policy.load(other)
    np.testing.assert_allclose(policy(images), net(torch.as_tensor(images)).detach().numpy())
    assert isinstance(q_policy(cfg.__class__(hidden_sizes=[16]), 4, 3), NumpyQNetwork)


def test_torch_actor_critic_samples_valid_actions_with_the_models_log_probabilities():
    cfg = PPOConfig(torso="impala_small", hidden_sizes=[16], normalize_obs=False)
    model = actor_critic(cfg, MINATAR, 3)
    policy = actor_critic_policy(cfg, MINATAR, 3)
    images = _images(MINATAR, 6)
    _, before = policy(images)
    assert np.all(before == 0.0)  # no weights yet: uniform policy, zero values
    policy.load(state_dict_to_numpy(model))
    mask = np.ones((6, 3), bool)
    mask[:, 1] = False
    actions, logprobs, values = policy.act(images, mask, np.random.default_rng(0))
    assert actions.dtype == np.int64 and not np.any(actions == 1)
    logits, expected_values = model(torch.as_tensor(images))
    logits = logits.detach().masked_fill(~torch.as_tensor(mask), torch.finfo(torch.float32).min)
    expected = torch.log_softmax(logits, -1).gather(1, torch.as_tensor(actions)[:, None])[:, 0]
    np.testing.assert_allclose(logprobs, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, expected_values.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_policies_refuse_a_torso_that_does_not_fit_naming_the_key():
    with pytest.raises(ValueError, match="algo.torso=nature_cnn: .*impala_small"):
        q_policy(DQNConfig(torso="nature_cnn"), MINATAR, 3)


# transitions, replay


def _image_transitions(
    obs: ObsSpec, n: int, num_actions: int = 3, seed: int = 0
) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        obs=_images(obs, n, seed),
        actions=rng.integers(0, num_actions, n),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=_images(obs, n, seed + 1),
        discounts=np.full(n, 0.99, np.float32),
        next_masks=np.ones((n, num_actions), bool),
        versions=np.zeros(n, np.int64),
    )


def test_n_step_transitions_of_images_stay_uint8():
    acc = NStepAccumulator(2, 0.9, 3)
    frames = _images(MINATAR, 4)
    for t in range(3):
        acc.push(EnvStep(frames[t], 1, 1.0, frames[t + 1], False, t == 2, None, 0))
    batch = acc.pop()
    assert batch.obs.dtype == batch.next_obs.dtype == np.uint8
    np.testing.assert_array_equal(batch.obs, frames[:3])
    np.testing.assert_array_equal(batch.next_obs, frames[[2, 3, 3]])
    assert check_transitions(batch, Limits.of_shapes(MINATAR, 3), None) is None


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_replay_stores_images_as_uint8_and_samples_exactly_what_was_added(cls):
    buffer = cls(capacity=16, obs_spec=MINATAR, num_actions=3, seed=1)
    added = _image_transitions(MINATAR, 12)
    buffer.add(added)
    assert buffer._storage.obs.dtype == buffer._storage.next_obs.dtype == np.uint8
    assert buffer._storage.obs.nbytes == 16 * 400
    sampled = buffer.sample(32)
    assert sampled.batch.obs.dtype == np.uint8
    for name in ("obs", "next_obs", "actions", "rewards"):
        np.testing.assert_array_equal(
            getattr(sampled.batch, name), getattr(added, name)[sampled.indices]
        )
    restored = cls(capacity=16, obs_spec=MINATAR, num_actions=3, seed=1)
    restored.load_state_dict(buffer.state_dict())
    np.testing.assert_array_equal(restored.sample(8).batch.obs, buffer.sample(8).batch.obs)
    other = cls(capacity=16, obs_spec=ObsSpec.image(10, 10, 4), num_actions=3)
    with pytest.raises(ValueError, match="state holds 10x10x4 uint8 image observations"):
        other.load_state_dict(buffer.state_dict())
    with pytest.raises(ValueError, match="dtype"):
        buffer.add(replace(added, obs=added.obs.astype(np.float32)))


def test_replay_bytes_count_one_byte_per_pixel():
    algo = DQNConfig(buffer_size=1000)
    per_transition = replay_bytes(algo, SOULS, 20) // 1000
    assert per_transition == 2 * 43_200 + 8 + 4 + 4 + 20 + 8  # obs, next obs, the rest
    assert replay_bytes(algo, 8, 4) // 1000 == 2 * 8 * 4 + 8 + 4 + 4 + 4 + 8


def test_a_loaded_replay_of_vectors_saved_before_image_specs_still_loads():
    buffer = ReplayBuffer(capacity=4, obs_spec=3, num_actions=2)
    state = buffer.state_dict()
    old = {k: v for k, v in state.items() if not k.startswith("obs_")} | {"obs_dim": 3}
    ReplayBuffer(capacity=4, obs_spec=3, num_actions=2).load_state_dict(old)


# inbound


def test_inbound_rejects_image_batches_of_the_wrong_dtype_shape_or_range():
    limits = Limits(MINATAR, 3, max_abs_obs=1e6, max_abs_reward=10.0, max_rows=64)
    good = _image_transitions(MINATAR, 8)
    assert check_transitions(good, limits, 0) is None
    as_float = replace(good, obs=good.obs.astype(np.float32))
    assert check_transitions(as_float, limits, 0).reason == "dtype"
    wrong_shape = replace(good, next_obs=good.next_obs[:, :, :, :3].copy())
    assert check_transitions(wrong_shape, limits, 0).reason == "shape"
    flat = replace(good, obs=good.obs.reshape(8, -1))
    assert check_transitions(flat, limits, 0).reason == "shape"
    too_bright = good.next_obs.copy()
    too_bright[3, 2, 1, 0] = 2  # MinAtar planes are 0 or 1
    rejection = check_transitions(replace(good, next_obs=too_bright), limits, 0)
    assert rejection.reason == "obs" and "reach 2" in rejection.detail
    pixels = Limits(ObsSpec.image(10, 10, 4), 3, 1.0, 10.0, 64)  # 255 is fine for 0..255 images
    full = replace(good, obs=good.obs * np.uint8(255), next_obs=good.next_obs * np.uint8(255))
    assert check_transitions(full, pixels, 0) is None


def test_inbound_checks_image_rollouts():
    limits = Limits(MINATAR, 3, 1e6, 10.0, 64)
    steps, envs = 4, 2
    batch = RolloutBatch(
        obs=_images(MINATAR, steps * envs).reshape(steps, envs, *MINATAR.shape),
        actions=np.zeros((steps, envs), np.int64),
        logprobs=np.full((steps, envs), -1.0, np.float32),
        values=np.zeros((steps, envs), np.float32),
        rewards=np.zeros((steps, envs), np.float32),
        terminated=np.zeros((steps, envs), bool),
        truncated=np.zeros((steps, envs), bool),
        final_values=np.zeros((steps, envs), np.float32),
        last_values=np.zeros(envs, np.float32),
        masks=np.ones((steps, envs, 3), bool),
        version=0,
    )
    assert check_rollout(batch, limits, 0) is None
    assert (
        check_rollout(replace(batch, obs=batch.obs.astype(np.float32)), limits, 0).reason == "dtype"
    )
    assert check_rollout(replace(batch, obs=batch.obs[..., :2].copy()), limits, 0).reason == "shape"
    assert check_rollout(replace(batch, obs=batch.obs * np.uint8(3)), limits, 0).reason == "obs"


def test_env_output_check_passes_frames_and_still_bounds_rewards():
    frame = _images(SOULS, 1)[0]
    assert env_output_problem(frame, 1.0, 1e6, 10.0) is None
    assert "reward" in env_output_problem(frame, 100.0, 1e6, 10.0)


def test_an_image_rollout_actor_that_imports_torch_late_gets_the_configured_threads():
    """Vector rollout actors never import torch; image ones import it after the process setup,
    when their policy is built: torch must still use ``cluster.torch_threads`` threads, not
    one per core (torch never uses more threads than cores, so 1 is what can be told apart)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: torch's default is already 1 thread")
    code = (
        "import os, sys\n"
        "os.environ.pop('OMP_NUM_THREADS', None)\n"
        "from soulsai_ray.actors.shell import setup_process\n"
        "from soulsai_ray.algo_config import DQNConfig\n"
        "from soulsai_ray.config import ClusterConfig, TrainConfig\n"
        "assert 'torch' not in sys.modules\n"
        "setup_process(TrainConfig(algo=DQNConfig(), cluster=ClusterConfig(torch_threads=1)))\n"
        "import torch\n"
        "print(torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1"]
