"""FlattenDictObservation: exact vectors and bounds for a hand-built space, and the Iudex space."""

from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest

from soulsai_ray.envs.wrappers import FlattenDictObservation

INF = np.inf


class _SpaceOnlyEnv(gym.Env):
    """Holds an observation space; the wrapper only reads spaces at construction."""

    def __init__(self, space: gym.spaces.Space) -> None:
        self.observation_space = space
        self.action_space = gym.spaces.Discrete(2)


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _small_space(order: tuple[str, ...] = ("b", "a", "c", "d", "e")) -> gym.spaces.Dict:
    entries = {
        "b": gym.spaces.Box(low=_f32(0, -2, -INF), high=_f32(10, 2, INF)),
        "a": gym.spaces.Discrete(3, start=-1),
        "c": gym.spaces.Dict(
            {
                "angle": gym.spaces.Box(-np.pi, np.pi, shape=(1,)),
                "k": gym.spaces.Discrete(1, start=5),
            }
        ),
        "d": gym.spaces.MultiBinary(2),
        "e": gym.spaces.Box(low=3.0, high=3.0, shape=(2,)),
    }
    return gym.spaces.Dict(OrderedDict((k, entries[k]) for k in order))


def _small_obs(a: int = -1) -> dict:
    return {
        "a": a,
        "b": np.array([7.5, -1.0, 123.0], dtype=np.float32),
        "c": {"angle": np.array([np.pi / 6], dtype=np.float32), "k": 5},
        "d": np.array([1, 0], dtype=np.int8),
        "e": np.array([3.0, 3.0], dtype=np.float32),
    }


def _wrap(space: gym.spaces.Space, angle_keys=()) -> FlattenDictObservation:
    return FlattenDictObservation(_SpaceOnlyEnv(space), angle_keys=angle_keys)


def test_small_space_layout_and_exact_vector():
    wrapper = _wrap(_small_space(), angle_keys=["c.angle"])
    assert wrapper.layout == [
        ("a", slice(0, 3), "onehot"),
        ("b", slice(3, 6), "box"),
        ("c.angle", slice(6, 8), "sincos"),
        ("d", slice(8, 10), "binary"),
    ]  # c.k (Discrete(1)) and e (low == high) are constants and dropped
    vec = wrapper.observation(_small_obs(a=-1))
    # a=-1 -> index 0; b: (7.5-5)/5, (-1-0)/2, unscaled; sin/cos(pi/6); bits 1, 0
    expected = [1, 0, 0, 0.5, -0.5, 123.0, 0.5, np.sqrt(3) / 2, 1, 0]
    np.testing.assert_allclose(vec, expected, atol=1e-6)
    assert vec.dtype == np.float32 and vec.shape == (10,)


def test_small_space_bounds():
    space = _wrap(_small_space(), angle_keys=["c.angle"]).observation_space
    assert space.dtype == np.float32 and space.shape == (10,)
    np.testing.assert_array_equal(space.low, [0, 0, 0, -1, -1, -INF, -1, -1, 0, 0])
    np.testing.assert_array_equal(space.high, [1, 1, 1, 1, 1, INF, 1, 1, 1, 1])


@pytest.mark.parametrize(("value", "hot"), [(-1, 0), (0, 1), (1, 2)])
def test_one_hot_with_start_minus_one(value, hot):
    vec = _wrap(_small_space()).observation(_small_obs(a=value))
    np.testing.assert_array_equal(vec[0:3], np.eye(3)[hot])


def test_discrete_value_outside_space_raises():
    with pytest.raises(ValueError, match="'a'"):
        _wrap(_small_space()).observation(_small_obs(a=2))


def test_without_angle_keys_the_angle_is_scaled():
    wrapper = _wrap(_small_space())
    assert ("c.angle", slice(6, 7), "box") in wrapper.layout
    vec = wrapper.observation(_small_obs())
    assert vec.shape == (9,)
    assert vec[6] == pytest.approx((np.pi / 6) / np.pi, abs=1e-6)  # Box(-pi, pi) scaled


def test_angle_element_of_a_pose():
    space = gym.spaces.Dict(
        {"pose": gym.spaces.Box(low=_f32(0, 0, 0, -np.pi), high=_f32(4, 4, 4, np.pi))}
    )
    wrapper = _wrap(space, angle_keys=["pose[3]"])
    assert wrapper.layout == [("pose", slice(0, 3), "box"), ("pose[3]", slice(3, 5), "sincos")]
    vec = wrapper.observation({"pose": np.array([1.0, 2.0, 3.0, np.pi / 2])})
    np.testing.assert_allclose(vec, [-0.5, 0.0, 0.5, 1.0, 0.0], atol=1e-6)


def test_box_with_some_constant_elements_keeps_them_at_zero():
    space = gym.spaces.Dict({"x": gym.spaces.Box(low=_f32(2, 0), high=_f32(2, 4))})
    wrapper = _wrap(space)
    np.testing.assert_allclose(wrapper.observation({"x": np.array([2.0, 3.0])}), [0.0, 0.5])


def test_same_space_gives_same_layout_whatever_the_insertion_order():
    first = _wrap(_small_space(("a", "b", "c", "d", "e")), ["c.angle"])
    second = _wrap(_small_space(("e", "d", "c", "b", "a")), ["c.angle"])
    assert first.layout == second.layout
    np.testing.assert_array_equal(first.observation(_small_obs()), second.observation(_small_obs()))


@pytest.mark.parametrize(
    ("angle_keys", "fragment"),
    [(["nope"], "name no Box"), (["a"], "Discrete"), (["b[3]"], "out of range")],
)
def test_bad_angle_keys_raise(angle_keys, fragment):
    with pytest.raises(ValueError, match=fragment):
        _wrap(_small_space(), angle_keys=angle_keys)


def test_unsupported_spaces_raise():
    with pytest.raises(ValueError, match="MultiDiscrete"):
        _wrap(gym.spaces.Dict({"m": gym.spaces.MultiDiscrete([2, 3])}))
    with pytest.raises(ValueError, match="Dict space"):
        _wrap(gym.spaces.Box(0, 1, shape=(2,)))
    with pytest.raises(ValueError, match="constant"):
        _wrap(gym.spaces.Dict({"k": gym.spaces.Discrete(1)}))


# --- the real Iudex space --------------------------------------------------------------------

IUDEX_ANGLES = ["player_pose[3]", "boss_pose[3]"]
IUDEX_CONSTANTS = {"player_max_hp", "player_max_sp", "boss_max_hp"}


@pytest.fixture(scope="module")
def iudex_space() -> gym.spaces.Dict:
    from soulsai_ray.envs.soulsgym import iudex_observation_space

    return iudex_observation_space()


def test_iudex_flat_size(iudex_space):
    # one-hot: boss animation 32+1, player animation 50+1, lock_on 2, phase 2;
    # box: hp, sp, boss hp, two durations (1 each), poses 4+4, camera 6
    assert _wrap(iudex_space).observation_space.shape == (33 + 51 + 2 + 2 + 5 + 8 + 6,)
    # each pose angle: 1 scaled value -> [sin, cos]
    assert _wrap(iudex_space, IUDEX_ANGLES).observation_space.shape == (109,)


def test_iudex_layout_covers_every_non_constant_key(iudex_space):
    layout = _wrap(iudex_space, IUDEX_ANGLES).layout
    keys = {key.split("[")[0] for key, _, _ in layout}
    assert keys == set(iudex_space.keys()) - IUDEX_CONSTANTS
    ends = [where.stop for _, where, _ in layout]
    starts = [where.start for _, where, _ in layout]
    assert starts == [0, *ends[:-1]] and ends[-1] == 109  # contiguous, no gaps


def test_iudex_random_samples_stay_in_unit_ranges(iudex_space):
    wrapper = _wrap(iudex_space, IUDEX_ANGLES)
    iudex_space.seed(0)
    for _ in range(300):
        vec = wrapper.observation(iudex_space.sample())
        assert wrapper.observation_space.contains(vec)
        for _key, where, kind in wrapper.layout:
            part = vec[where]
            if kind == "onehot":
                assert set(np.unique(part)) <= {0.0, 1.0} and part.sum() == 1.0
            elif kind == "sincos":
                assert part[0] ** 2 + part[1] ** 2 == pytest.approx(1.0, abs=1e-5)
            else:
                assert kind == "box" and np.all(np.abs(part) <= 1.0 + 1e-6)
