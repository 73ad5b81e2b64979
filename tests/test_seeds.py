"""latent_ops.seeds: the seed range, its one check, wrapping, SplitMix64 and 32-bit derivation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops import seeds


def test_range() -> None:
    assert seeds.MAX_SEED == 2**64 - 1 == 18446744073709551615
    assert seeds.SEED_BITS == 64


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (2**64 - 1, 2**64 - 1), (np.uint64(2**64 - 1), 2**64 - 1), (np.int32(7), 7), (3.0, 3), (torch.tensor(5).item(), 5)],
)
def test_check_seed_accepts_integers(value: object, expected: int) -> None:
    got = seeds.check_seed(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (-1, r"seed must be in \[0, 2\*\*64\), got -1"),
        (2**64, r"seed must be in \[0, 2\*\*64\), got 18446744073709551616"),
        (1.5, "seed must be an integer, got 1.5"),
        (True, "seed must be an integer, got True"),
        ("3", "seed must be an integer, got '3'"),
        (None, "seed must be an integer, got None"),
        (float("inf"), "seed must be an integer, got inf"),
        (float("nan"), "seed must be an integer, got nan"),
    ],
)
def test_check_seed_refuses_the_rest(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        seeds.check_seed(value)


def test_check_seed_names_the_input() -> None:
    with pytest.raises(ValueError, match=r"^subseed must be in \[0, 2\*\*64\), got -3$"):
        seeds.check_seed(-3, "subseed")


def test_offset_wraps_modulo_2_64() -> None:
    assert seeds.offset(5, 3) == 8
    assert seeds.offset(2**64 - 1, 1) == 0
    assert seeds.offset(2**64 - 2, 5) == 3
    assert seeds.offset(0, -1) == 2**64 - 1


def test_mix64_is_splitmix64() -> None:
    # Vigna's splitmix64.c from state 1234567: state += 0x9E3779B97F4A7C15, output = mix64(state).
    state, out = 1234567, []
    for _ in range(5):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        out.append(seeds.mix64(state))
    assert out == [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                   16408922859458223821]
    assert seeds.mix64(0) == 0
    assert seeds.mix64(2**64 + 5) == seeds.mix64(5)  # reduced modulo 2**64 first


def test_mix64_scatters_neighbours() -> None:
    outs = [seeds.mix64(s) for s in range(2000)]
    assert len(set(outs)) == 2000 and all(0 <= z <= seeds.MAX_SEED for z in outs)
    flipped = [bin(seeds.mix64(s) ^ seeds.mix64(s + 1)).count("1") for s in range(2000)]
    assert 28 < sum(flipped) / len(flipped) < 36  # about half of the 64 bits change


def test_seed32_keeps_small_seeds_and_uses_every_bit_of_large_ones() -> None:
    for s in (0, 1, 12345, 2**32 - 1):
        assert seeds.seed32(s) == s  # what numpy and scikit-learn always got for these seeds
    big = [seeds.seed32(s + k * 2**32) for s in (0, 7) for k in (1, 2, 2**31, 2**32 - 1)]
    assert all(0 <= v < 2**32 for v in big)
    assert len(set(big)) == len(big) and not {0, 7} & set(big)  # never seed % 2**32
    assert seeds.seed32(2**32) == seeds.mix64(2**32) >> 32 == 3626022889


def test_cpu_generator_streams() -> None:
    def draw(g: torch.Generator) -> torch.Tensor:
        return torch.randn(8, generator=g)

    for s in (0, 99, 2**32 - 1):
        assert torch.equal(draw(seeds.cpu_generator(s)), draw(torch.Generator().manual_seed(s)))
    # torch's own generator keeps 32 bits of its seed; cpu_generator does not
    assert torch.equal(draw(torch.Generator().manual_seed(99)), draw(torch.Generator().manual_seed(99 + 2**32)))
    assert not torch.equal(draw(seeds.cpu_generator(99)), draw(seeds.cpu_generator(99 + 2**32)))
    assert seeds.cpu_generator(2**64 - 1).device.type == "cpu"
