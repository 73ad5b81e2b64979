"""Golden values of every noise output: a seed's noise cannot change without a version bump.

The library promises that the noise of a seed never changes silently: a change bumps the version
of what changed (``NOISE_VERSIONS[convention]``, ``TYPE_VERSIONS[type]``, ``VARIATION_VERSION``,
``STEP_NOISE_VERSION``, ``PHILOX_VERSION``; flat in :func:`latent_ops.noise.versions`). Each case
below was recorded at the versions it names, with the code of the last release: its first values,
float64 sum and sum of squares, and the sha256 of its float32 bytes.

Step noise 2 (STEP_NOISE_VERSION): the a1111/a1111_nv step streams became A1111's (the initial-noise
generators continued; ENSD; no variation mixed in); the comfy and diffusers step cases were re-recorded
at version 2 with the same values as version 1. Brownian trees (``brownian``) are new at version 1.

A failing case says which version to bump. If the change is intended: bump that version, then
re-record the case (``python tests/test_noise_golden.py`` prints the table). If it is not
intended, it is a regression.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import torch

from latent_ops import noise
from latent_ops.noise import brownian, conventions
from latent_ops.noise import types as noise_types

SHAPE = (2, 4, 6, 10)
SEED = 20240611
BIG_SEED = 2**64 - 1  # per-image seeds wrap: image 1 has seed 0


def _noise(**kw: object) -> Callable[[], torch.Tensor]:
    shape = kw.pop("shape", SHAPE)
    seed = kw.pop("seed", SEED)
    return lambda: noise.make_noise(shape, seed, **kw)


def _steps(convention: str, calls: int = 3, **kw: object) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        stream = noise.make_step_noise(SEED, SHAPE[0], convention=convention, **kw)
        like = torch.zeros(SHAPE)
        return torch.stack([stream(like) for _ in range(calls)])

    return run


def _brownian(convention: str, **kw: object) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        plan = conventions.step_plan(SEED, SHAPE[0], convention=convention, **kw)
        sampler = brownian.BrownianNoise(plan, torch.zeros(SHAPE), 0.03, 14.6)
        sig = torch.tensor([14.6, 6.0, 2.5, 0.4, 0.03])
        return torch.stack([sampler(sig[i], sig[i + 1]) for i in range(len(sig) - 1)] + [sampler(sig[3], sig[1])])

    return run


def _cases() -> dict[str, tuple[Callable[[], torch.Tensor], tuple[str, ...]]]:
    """name -> (make the tensor, the keys of :func:`noise.versions` its output depends on)."""
    cases: dict[str, tuple[Callable[[], torch.Tensor], tuple[str, ...]]] = {}
    for c in noise.CONVENTIONS:
        conv = (f"convention.{c}",) + (("philox",) if c == "a1111_nv" else ())
        for t in noise_types.NOISE_TYPES:
            cases[f"{c}/{t}"] = (_noise(convention=c, noise_type=t), conv + (f"type.{t}",))
        vary = conv + ("type.gaussian", "variation")
        cases[f"{c}/subseed"] = (_noise(convention=c, subseed=99, subseed_strength=0.37), vary)
        cases[f"{c}/stacked"] = (_noise(convention=c, variations="5:0.25, 6:0.6"), vary)
        cases[f"{c}/subseed+stacked+resize"] = (
            _noise(convention=c, subseed=7, subseed_strength=0.5, variations=[(8, 0.3)], resize_from=(4, 6)),
            vary,
        )
        cases[f"{c}/wrap"] = (_noise(convention=c, seed=BIG_SEED), conv + ("type.gaussian",))
        cases[f"{c}/pink+subseed"] = (
            _noise(convention=c, noise_type="pink", subseed=3, subseed_strength=0.8),
            conv + ("type.pink", "variation"),
        )
        step = conv if c == "a1111_nv" else ()
        cases[f"{c}/step"] = (_steps(c), step + ("step_noise",))
        cases[f"{c}/step+variations"] = (
            _steps(c, subseed=11, subseed_strength=0.4, variations="12:0.5"),
            step + ("step_noise", "variation"),
        )
    cases["comfy/batch_index"] = (_noise(shape=(3, 4, 6, 10), batch_index=[3, 1, 1]), ("convention.comfy", "type.gaussian"))
    cases["a1111/batch_index"] = (
        _noise(shape=(3, 4, 6, 10), convention="a1111", batch_index=[3, 1, 1]),
        ("convention.a1111", "type.gaussian"),
    )
    for c, dt in (("comfy", torch.float16), ("comfy", torch.bfloat16), ("diffusers", torch.float16)):
        cases[f"{c}/{dt}"] = (_noise(convention=c, dtype=dt), (f"convention.{c}", "type.gaussian"))
    cases["comfy/perlin/video"] = (_noise(shape=(1, 4, 3, 6, 10), noise_type="perlin"), ("convention.comfy", "type.perlin"))
    cases["comfy/perlin/options"] = (
        _noise(noise_type="perlin", scale=3.0, octaves=2, persistence=0.7, lacunarity=3.0),
        ("convention.comfy", "type.perlin"),
    )
    cases["comfy/pyramid/options"] = (
        _noise(noise_type="pyramid", discount=0.5, iterations=3),
        ("convention.comfy", "type.pyramid"),
    )
    cases["comfy/coloured/alpha"] = (_noise(noise_type="coloured", alpha=1.5), ("convention.comfy", "type.coloured"))
    cases["comfy/offset/strength"] = (_noise(noise_type="offset", offset_strength=0.5), ("convention.comfy", "type.offset"))
    cases["a1111/step/seed_delta"] = (_steps("a1111", seed_delta=31337), ("step_noise",))
    cases["a1111_nv/step/seed_delta"] = (_steps("a1111_nv", seed_delta=31337), ("convention.a1111_nv", "philox", "step_noise"))
    cases["comfy/step/seed_delta"] = (_steps("comfy", seed_delta=31337), ("step_noise",))
    cases["comfy/brownian"] = (_brownian("comfy"), ("brownian",))
    cases["comfy/brownian+variations"] = (_brownian("comfy", subseed=11, subseed_strength=0.4, variations="12:0.5"),
                                          ("brownian", "variation"))
    cases["a1111_nv/brownian"] = (_brownian("a1111_nv", batch_index=[4, 2]), ("brownian", "philox"))
    return cases


CASES = _cases()


def fingerprint(x: torch.Tensor) -> tuple[list[float], float, float, str]:
    """(first 4 values, float64 sum, float64 sum of squares, sha256 of the float32 bytes)."""
    flat = x.float().flatten()
    d = flat.double()
    return (
        flat[:4].tolist(),
        round(float(d.sum()), 9),
        round(float((d * d).sum()), 9),
        hashlib.sha256(flat.contiguous().numpy().tobytes()).hexdigest()[:32],
    )


# name: (versions recorded at, first 4 values, sum, sum of squares, sha256[:32] of the float32 bytes)
GOLDEN: dict[str, tuple[dict[str, int], list[float], float, float, str]] = {
    'a1111/batch_index': ({'convention.a1111': 1, 'type.gaussian': 1}, [-0.15350478887557983, 0.3553889989852905, -0.018288271501660347, 1.3550817966461182], -15.832364389, 693.300940897, '2e26688574b564326dc1faa28c1597c1'),
    'a1111/blue': ({'convention.a1111': 1, 'type.blue': 1}, [-0.8811191320419312, 0.6776848435401917, -0.35591426491737366, -1.3615367412567139], -9.88e-07, 479.999997331, '23f54cb44990d0d95983f2c977f00458'),
    'a1111/brown': ({'convention.a1111': 1, 'type.brown': 1}, [-1.1891065835952759, 0.35086914896965027, -0.4445464015007019, -1.2186561822891235], -4.2e-07, 480.000001975, 'c7b21016e70f5e93f4be34ea8c7e823c'),
    'a1111/coloured': ({'convention.a1111': 1, 'type.coloured': 1}, [-1.0832245349884033, 0.5189753770828247, -0.49433887004852295, -1.3941599130630493], 3.52e-07, 479.999998732, '4537ec25935e9e491eec9f433cf4f196'),
    'a1111/gaussian': ({'convention.a1111': 1, 'type.gaussian': 1}, [-1.14413583278656, 0.4542907178401947, -0.6278170347213745, -1.6010173559188843], -4.972924061, 456.053272806, 'c4e0956a71e0b0b0bfc0a9b579b2d179'),
    'a1111/offset': ({'convention.a1111': 1, 'type.offset': 1}, [-1.214388132095337, 0.38403841853141785, -0.6980693340301514, -1.6712696552276611], -22.753640007, 463.971264832, '4e791ecda44a8b1772b260f887a2b708'),
    'a1111/perlin': ({'convention.a1111': 1, 'type.perlin': 1}, [0.13290585577487946, 2.0064992904663086, -0.4520547688007355, -1.199818730354309], 2.7e-08, 479.999998758, '179e3baa44a45315dd182a0b5139834b'),
    'a1111/pink': ({'convention.a1111': 1, 'type.pink': 1}, [-1.0832245349884033, 0.5189753770828247, -0.49433887004852295, -1.3941599130630493], 3.52e-07, 479.999998732, '4537ec25935e9e491eec9f433cf4f196'),
    'a1111/pink+subseed': ({'convention.a1111': 1, 'type.pink': 1, 'variation': 1}, [-0.6765953302383423, 0.3143464922904968, -1.0757850408554077, -0.8144446611404419], -2.278748954, 472.095258778, '4569f990e04ff54120906ba83a2081f3'),
    'a1111/pyramid': ({'convention.a1111': 1, 'type.pyramid': 1}, [-1.1463340520858765, -0.5197008848190308, -1.3173185586929321, -1.8031508922576904], -4.36e-07, 480.000000649, '3d5bfacf28dae74d7c42422fa41446db'),
    'a1111/stacked': ({'convention.a1111': 1, 'type.gaussian': 1, 'variation': 1}, [-1.180587887763977, 0.8339102268218994, -1.4913749694824219, -1.8333234786987305], -32.573501681, 456.863454616, '9b858ab981f7e40af2ae747dfcce55cd'),
    'a1111/step': ({'step_noise': 2}, [0.4961722791194916, 0.1731444150209427, -0.4727795422077179, -0.6030759811401367], -7.571553642, 1386.94531308, '74261355e4741904d00c19375829d3b1'),
    'a1111/step+variations': ({'step_noise': 2, 'variation': 1}, [0.4961722791194916, 0.1731444150209427, -0.4727795422077179, -0.6030759811401367], -20.985093275, 1445.730088318, '715d6ec91354b75c91248d73df96725c'),
    'a1111/step/seed_delta': ({'step_noise': 2}, [0.6540718078613281, 0.19553957879543304, -0.00012044296454405412, 0.32324525713920593], -37.763508067, 1458.492894734, '4ee29074be74714f1bc07094f1dd2ffa'),
    'a1111/subseed': ({'convention.a1111': 1, 'type.gaussian': 1, 'variation': 1}, [-0.8298736214637756, -1.58917236328125, -0.12483996152877808, -1.1262013912200928], -7.804461688, 514.356596376, 'b73a89d8c66907d24fccbc08ea9125e9'),
    'a1111/subseed+stacked+resize': ({'convention.a1111': 1, 'type.gaussian': 1, 'variation': 1}, [-1.14413583278656, 0.4542907178401947, -0.6278170347213745, -1.6010173559188843], -10.010491908, 440.161359978, 'eb068c83829b42f0b6f588ecdf3b26b7'),
    'a1111/uniform': ({'convention.a1111': 1, 'type.uniform': 1}, [1.5038566589355469, -0.41394954919815063, -1.11091148853302, 0.7920185923576355], -7.755433888, 479.822821218, '8c058cec14ab9311edabb807d5406080'),
    'a1111/violet': ({'convention.a1111': 1, 'type.violet': 1}, [-0.8393935561180115, 0.6674609184265137, -0.25129204988479614, -1.2611066102981567], -9.72e-07, 479.999997165, '351ff74f9dcc907f312e40aef84692a4'),
    'a1111/wrap': ({'convention.a1111': 1, 'type.gaussian': 1}, [-2.664297580718994, -1.0910485982894897, 0.45144742727279663, 0.22836069762706757], 19.751308998, 458.615279461, 'fe193baa07aaae45ab1fc82b7a09808e'),
    'a1111_nv/blue': ({'convention.a1111_nv': 1, 'philox': 1, 'type.blue': 1}, [-0.8060353994369507, -0.8370495438575745, 0.4390682578086853, -0.7059903144836426], 8.56e-07, 480.000001014, 'e19242d799320626c4a39a99fb4360e0'),
    'a1111_nv/brown': ({'convention.a1111_nv': 1, 'philox': 1, 'type.brown': 1}, [-1.3566759824752808, -0.7679358720779419, 0.529798150062561, -0.19702570140361786], -1.1e-08, 480.000000925, '1833fcc05ba55f1e42763fef121e2a88'),
    'a1111_nv/brownian': ({'brownian': 1, 'philox': 1}, [-1.2648863792419434, 0.2820281684398651, -0.023534579202532768, 0.33572956919670105], -33.789591547, 2485.778619728, 'd7c7222561a31016bda2b0ca765ea39f'),
    'a1111_nv/coloured': ({'convention.a1111_nv': 1, 'philox': 1, 'type.coloured': 1}, [-1.2567808628082275, -0.8389251232147217, 0.5737314224243164, -0.4503753185272217], -3.32e-07, 480.000000895, 'f6687605fe837c9e1bfd70e2b663d6f3'),
    'a1111_nv/gaussian': ({'convention.a1111_nv': 1, 'philox': 1, 'type.gaussian': 1}, [-1.1347044706344604, -0.9411221146583557, 0.5294790267944336, -0.6968008875846863], 15.124031889, 484.970729803, '8109748db5e2e8fdf573ef01707257e9'),
    'a1111_nv/offset': ({'convention.a1111_nv': 1, 'philox': 1, 'type.offset': 1}, [-1.075984239578247, -0.8824018239974976, 0.5881993174552917, -0.6380805969238281], 13.390060092, 485.716518112, '4da83b922c900650d909c6a4b9b77bef'),
    'a1111_nv/perlin': ({'convention.a1111_nv': 1, 'philox': 1, 'type.perlin': 1}, [-0.5944799780845642, -0.5365551710128784, 0.390801340341568, -0.8731319904327393], 1.121e-06, 479.999999408, 'b05311cbc32fddb8ad423383a4964a74'),
    'a1111_nv/pink': ({'convention.a1111_nv': 1, 'philox': 1, 'type.pink': 1}, [-1.2567808628082275, -0.8389251232147217, 0.5737314224243164, -0.4503753185272217], -3.32e-07, 480.000000895, 'f6687605fe837c9e1bfd70e2b663d6f3'),
    'a1111_nv/pink+subseed': ({'convention.a1111_nv': 1, 'philox': 1, 'type.pink': 1, 'variation': 1}, [0.1386401653289795, -0.8242511749267578, -0.9954472184181213, 0.9523308277130127], 2.015706809, 485.805106747, 'ecba491a8ca5d943e26d3e5015fabae8'),
    'a1111_nv/pyramid': ({'convention.a1111_nv': 1, 'philox': 1, 'type.pyramid': 1}, [-2.2917909622192383, -0.862942099571228, 0.7571452260017395, -0.6203548312187195], 4.82e-07, 479.99999989, '6f1d15f5c03dcb1f659af5d14fe589c3'),
    'a1111_nv/stacked': ({'convention.a1111_nv': 1, 'philox': 1, 'type.gaussian': 1, 'variation': 1}, [-0.12634724378585815, -0.6367080211639404, 0.5301635265350342, 0.8408076167106628], 2.997165751, 508.77025547, '89f0cc80603db1106a72bd2f6f25d3aa'),
    'a1111_nv/step': ({'convention.a1111_nv': 1, 'philox': 1, 'step_noise': 2}, [0.5872028470039368, -0.9830442070960999, 0.5210852026939392, -1.8990843296051025], 45.588879146, 1406.078901527, '7a45cb6b4204bdef37bb664453e8619e'),
    'a1111_nv/step+variations': ({'convention.a1111_nv': 1, 'philox': 1, 'step_noise': 2, 'variation': 1}, [0.5872028470039368, -0.9830442070960999, 0.5210852026939392, -1.8990843296051025], 116.184837323, 1391.216456647, 'db0c4df91840a5ef02c8ad67c74a031a'),
    'a1111_nv/step/seed_delta': ({'convention.a1111_nv': 1, 'philox': 1, 'step_noise': 2}, [2.20436692237854, -0.266814261674881, 0.018870526924729347, -0.45576339960098267], 3.851844224, 1427.749409582, 'bcf91ce3be9af0e52ee901ae28b4500d'),
    'a1111_nv/subseed': ({'convention.a1111_nv': 1, 'philox': 1, 'type.gaussian': 1, 'variation': 1}, [-1.669223427772522, -0.7675553560256958, -1.142333745956421, -0.8739653825759888], 8.117781416, 533.374588583, 'ea464059aa8220365d8b95f9e1f115e3'),
    'a1111_nv/subseed+stacked+resize': ({'convention.a1111_nv': 1, 'philox': 1, 'type.gaussian': 1, 'variation': 1}, [-1.1347044706344604, -0.9411221146583557, 0.5294790267944336, -0.6968008875846863], 7.179795649, 555.457686023, '6823f3435d10a13a57d291903faa32a9'),
    'a1111_nv/uniform': ({'convention.a1111_nv': 1, 'philox': 1, 'type.uniform': 1}, [-0.04483813792467117, 0.4583040177822113, -1.5849164724349976, 0.8136461973190308], 2.824867421, 469.129648597, 'fabd4e4384f495b957d6902e6b0e9a6f'),
    'a1111_nv/violet': ({'convention.a1111_nv': 1, 'philox': 1, 'type.violet': 1}, [-0.6053317785263062, -0.7950938940048218, 0.3536527752876282, -0.7105873823165894], 2.61e-07, 480.000001271, '190fb372955b9e41ee70c59393c9951a'),
    'a1111_nv/wrap': ({'convention.a1111_nv': 1, 'philox': 1, 'type.gaussian': 1}, [0.6323022842407227, 0.03350096940994263, 0.8390876650810242, -2.0634682178497314], -20.427138371, 451.394722529, '7cff0dce0bde8c5a4beae5b010dadf66'),
    'comfy/batch_index': ({'convention.comfy': 1, 'type.gaussian': 1}, [-2.753849744796753, -0.14706149697303772, -1.5707118511199951, 0.06290407478809357], -26.316521864, 724.432876763, 'cbceb5ab2d0b0a02539c5cad0e887abf'),
    'comfy/blue': ({'convention.comfy': 1, 'type.blue': 1}, [-0.8811191320419312, 0.6776848435401917, -0.35591426491737366, -1.3615367412567139], -7.36e-07, 479.999998755, '584c230eaea4250238c1a4cff6c08c67'),
    'comfy/brown': ({'convention.comfy': 1, 'type.brown': 1}, [-1.1891065835952759, 0.35086914896965027, -0.4445464015007019, -1.2186561822891235], -1.97e-07, 480.000000711, 'ac8fe8ac4339d7e4026e79175019be32'),
    'comfy/brownian': ({'brownian': 1}, [1.2664541006088257, -0.7875435948371887, 0.009334303438663483, -1.5295964479446411], 16.871448712, 2429.836147821, 'aaec0ff075806e6a6e93711bf774c387'),
    'comfy/brownian+variations': ({'brownian': 1, 'variation': 1}, [0.04629424959421158, -1.2822474241256714, -0.18774296343326569, 0.5047817230224609], 36.196978548, 2314.010727918, '35e2914cdac28dd74918eb08398d3032'),
    'comfy/coloured': ({'convention.comfy': 1, 'type.coloured': 1}, [-1.0832245349884033, 0.5189753770828247, -0.49433887004852295, -1.3941599130630493], -3.43e-07, 479.999999837, 'a2721fec3db57b51ac854389d7012adb'),
    'comfy/coloured/alpha': ({'convention.comfy': 1, 'type.coloured': 1}, [-1.1420234441757202, 0.43891867995262146, -0.4839218854904175, -1.3275879621505737], 3.1e-07, 480.000000042, 'a3c103441bc9afb1a2d4fe60fe4f18dd'),
    'comfy/gaussian': ({'convention.comfy': 1, 'type.gaussian': 1}, [-1.14413583278656, 0.4542907178401947, -0.6278170347213745, -1.6010173559188843], -10.167597838, 474.262176211, '8551de6f46b929db2d427edba2dc3236'),
    'comfy/offset': ({'convention.comfy': 1, 'type.offset': 1}, [-1.0575231313705444, 0.5409033894538879, -0.5412043929100037, -1.5144046545028687], -3.112090368, 482.764799542, '5394b1aaf965dc8ec9b9c9253f1e046a'),
    'comfy/offset/strength': ({'convention.comfy': 1, 'type.offset': 1}, [-0.711072564125061, 0.8873540163040161, -0.1947537660598755, -1.1679540872573853], 25.109945364, 620.001488923, '8b0d8aef8e0a2fe00813952527103b63'),
    'comfy/perlin': ({'convention.comfy': 1, 'type.perlin': 1}, [0.39310261607170105, 0.14331315457820892, 0.39937278628349304, -0.9723546504974365], 7.12e-07, 479.999995851, '6d895a5bd46852806b46343c689a0717'),
    'comfy/perlin/options': ({'convention.comfy': 1, 'type.perlin': 1}, [-0.8504447937011719, 0.6859252452850342, 0.44729310274124146, 0.6436827182769775], 1.78e-07, 479.999999397, 'b50ceebf919f695213508522bef051c7'),
    'comfy/perlin/video': ({'convention.comfy': 1, 'type.perlin': 1}, [0.3887978196144104, 1.4886122941970825, 0.18228237330913544, -0.6953421235084534], -5.12e-07, 720.00000064, 'f25171363aed9d6e39786345c58afc03'),
    'comfy/pink': ({'convention.comfy': 1, 'type.pink': 1}, [-1.0832245349884033, 0.5189753770828247, -0.49433887004852295, -1.3941599130630493], -3.43e-07, 479.999999837, 'a2721fec3db57b51ac854389d7012adb'),
    'comfy/pink+subseed': ({'convention.comfy': 1, 'type.pink': 1, 'variation': 1}, [-0.7449432015419006, 0.1808876097202301, -1.0747311115264893, -0.6941407918930054], -9.6e-08, 480.000010587, '2109f74a58d58495dff2b5c402537ca2'),
    'comfy/pyramid': ({'convention.comfy': 1, 'type.pyramid': 1}, [-0.35623472929000854, 0.24641408026218414, -0.38200855255126953, -0.5486432313919067], 2.94e-07, 479.999997058, '41f12cbabf44a4e742385a05b394075b'),
    'comfy/pyramid/options': ({'convention.comfy': 1, 'type.pyramid': 1}, [-0.4530295133590698, 0.16730467975139618, -0.5057101845741272, -0.6994118094444275], 2e-09, 479.999998836, 'cf1077fb0698db5651867d70f5cddba7'),
    'comfy/stacked': ({'convention.comfy': 1, 'type.gaussian': 1, 'variation': 1}, [-1.2094041109085083, 0.8826240301132202, -1.9356049299240112, -2.353457450866699], -26.123764893, 489.651206056, '5691687d5b99f41bfc34f913ba966db3'),
    'comfy/step': ({'step_noise': 2}, [0.9385895133018494, 0.6868786811828613, -0.6950095295906067, 0.39930102229118347], 83.058899926, 1398.307300842, '77cfe0771dc22a3c07596aebd9ba1ff1'),
    'comfy/step+variations': ({'step_noise': 2, 'variation': 1}, [2.421251058578491, 1.8731356859207153, -1.0434064865112305, 0.250740647315979], 25.921916576, 1407.719043498, 'efe3f556c0734b78a4d03316a7fe0450'),
    'comfy/step/seed_delta': ({'step_noise': 2}, [0.6540718078613281, 0.19553957879543304, -0.00012044296454405412, 0.32324525713920593], -37.763508067, 1458.492894734, '4ee29074be74714f1bc07094f1dd2ffa'),
    'comfy/subseed': ({'convention.comfy': 1, 'type.gaussian': 1, 'variation': 1}, [-0.7925820350646973, -1.0728496313095093, -0.12760291993618011, -0.8781563639640808], -19.441317013, 482.649088241, '7951000619d0b5b051808874b3ba6611'),
    'comfy/subseed+stacked+resize': ({'convention.comfy': 1, 'type.gaussian': 1, 'variation': 1}, [-1.14413583278656, 0.4542907178401947, -0.6278170347213745, -1.6010173559188843], -24.337323534, 441.411782589, 'e32e6b4c13800f8ca6f6d4222290f513'),
    'comfy/torch.bfloat16': ({'convention.comfy': 1, 'type.gaussian': 1}, [-1.140625, 0.455078125, -0.62890625, -1.6015625], -10.176765442, 474.317138069, '3de0cb8b4615c181b74c78426dc91073'),
    'comfy/torch.float16': ({'convention.comfy': 1, 'type.gaussian': 1}, [-1.14453125, 0.454345703125, -0.6279296875, -1.6005859375], -10.173243046, 474.289734727, 'ae35c9b3b8d5b4e277e3d3e4ceb1dad7'),
    'comfy/uniform': ({'convention.comfy': 1, 'type.uniform': 1}, [1.5038566589355469, -0.41394954919815063, -1.11091148853302, 0.7920185923576355], -2.084649839, 474.595397251, '070e4606d42af616deb89df599250c07'),
    'comfy/violet': ({'convention.comfy': 1, 'type.violet': 1}, [-0.8393935561180115, 0.6674609184265137, -0.25129204988479614, -1.2611066102981567], -7.27e-07, 480.00000049, '9a57cf2358c74d609405cd2e26643ef8'),
    'comfy/wrap': ({'convention.comfy': 1, 'type.gaussian': 1}, [-2.664297580718994, -1.0910485982894897, 0.45144742727279663, 0.22836069762706757], 10.124038714, 492.246573916, '434f3aebe6ec1d9504a375ad3f962ed6'),
    'diffusers/blue': ({'convention.diffusers': 1, 'type.blue': 1}, [-0.8811191320419312, 0.6776848435401917, -0.35591426491737366, -1.3615367412567139], -9.88e-07, 479.999997331, '23f54cb44990d0d95983f2c977f00458'),
    'diffusers/brown': ({'convention.diffusers': 1, 'type.brown': 1}, [-1.1891065835952759, 0.35086914896965027, -0.4445464015007019, -1.2186561822891235], -4.2e-07, 480.000001975, 'c7b21016e70f5e93f4be34ea8c7e823c'),
    'diffusers/coloured': ({'convention.diffusers': 1, 'type.coloured': 1}, [-1.0832245349884033, 0.5189753770828247, -0.49433887004852295, -1.3941599130630493], 3.52e-07, 479.999998732, '4537ec25935e9e491eec9f433cf4f196'),
    'diffusers/gaussian': ({'convention.diffusers': 1, 'type.gaussian': 1}, [-1.14413583278656, 0.4542907178401947, -0.6278170347213745, -1.6010173559188843], -4.972924061, 456.053272806, 'c4e0956a71e0b0b0bfc0a9b579b2d179'),
    'diffusers/offset': ({'convention.diffusers': 1, 'type.offset': 1}, [-1.214388132095337, 0.38403841853141785, -0.6980693340301514, -1.6712696552276611], -22.753640007, 463.971264832, '4e791ecda44a8b1772b260f887a2b708'),
    'diffusers/perlin': ({'convention.diffusers': 1, 'type.perlin': 1}, [0.13290585577487946, 2.0064992904663086, -0.4520547688007355, -1.199818730354309], 2.7e-08, 479.999998758, '179e3baa44a45315dd182a0b5139834b'),
    'diffusers/pink': ({'convention.diffusers': 1, 'type.pink': 1}, [-1.0832245349884033, 0.5189753770828247, -0.49433887004852295, -1.3941599130630493], 3.52e-07, 479.999998732, '4537ec25935e9e491eec9f433cf4f196'),
    'diffusers/pink+subseed': ({'convention.diffusers': 1, 'type.pink': 1, 'variation': 1}, [-0.7449432015419006, 0.1808876097202301, -1.0747311115264893, -0.6941407918930054], -5.05e-07, 480.000003022, 'e2bf4004ac5ebbfe519ab553eefc0c5e'),
    'diffusers/pyramid': ({'convention.diffusers': 1, 'type.pyramid': 1}, [-1.1463340520858765, -0.5197008848190308, -1.3173185586929321, -1.8031508922576904], -4.36e-07, 480.000000649, '3d5bfacf28dae74d7c42422fa41446db'),
    'diffusers/stacked': ({'convention.diffusers': 1, 'type.gaussian': 1, 'variation': 1}, [-1.2094041109085083, 0.8826240301132202, -1.9356049299240112, -2.353457450866699], -35.136027481, 448.51162595, '6eae6bd8d4c9ab3e929d6500b1ea8eaa'),
    'diffusers/step': ({'step_noise': 2}, [0.9385895133018494, 0.6868786811828613, -0.6950095295906067, 0.39930102229118347], 83.058899926, 1398.307300842, '77cfe0771dc22a3c07596aebd9ba1ff1'),
    'diffusers/step+variations': ({'step_noise': 2, 'variation': 1}, [2.421251058578491, 1.8731356859207153, -1.0434064865112305, 0.250740647315979], 25.921916576, 1407.719043498, 'efe3f556c0734b78a4d03316a7fe0450'),
    'diffusers/subseed': ({'convention.diffusers': 1, 'type.gaussian': 1, 'variation': 1}, [-0.7925820350646973, -1.0728496313095093, -0.12760291993618011, -0.8781563639640808], -6.046352199, 479.740305988, '07d0c2b35d7f16b8357fe2144b167a9b'),
    'diffusers/subseed+stacked+resize': ({'convention.diffusers': 1, 'type.gaussian': 1, 'variation': 1}, [-1.14413583278656, 0.4542907178401947, -0.6278170347213745, -1.6010173559188843], -19.535471446, 420.099513301, '8f9a1b3e3fc7ffd88cabdc9c3086613e'),
    'diffusers/torch.float16': ({'convention.diffusers': 1, 'type.gaussian': 1}, [-1.14453125, 0.454345703125, -0.6279296875, -1.6005859375], -4.976102829, 456.051503077, '40ac0c3897447736a09ce6e4f7140431'),
    'diffusers/uniform': ({'convention.diffusers': 1, 'type.uniform': 1}, [1.5038566589355469, -0.41394954919815063, -1.11091148853302, 0.7920185923576355], -7.755433888, 479.822821218, '8c058cec14ab9311edabb807d5406080'),
    'diffusers/violet': ({'convention.diffusers': 1, 'type.violet': 1}, [-0.8393935561180115, 0.6674609184265137, -0.25129204988479614, -1.2611066102981567], -9.72e-07, 479.999997165, '351ff74f9dcc907f312e40aef84692a4'),
    'diffusers/wrap': ({'convention.diffusers': 1, 'type.gaussian': 1}, [-2.664297580718994, -1.0910485982894897, 0.45144742727279663, 0.22836069762706757], 19.751308998, 458.615279461, 'fe193baa07aaae45ab1fc82b7a09808e'),
}  # fmt: skip


def test_every_case_is_recorded() -> None:
    assert sorted(GOLDEN) == sorted(CASES), "record the new cases (python tests/test_noise_golden.py)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_unchanged_unless_version_bumped(name: str) -> None:
    make, keys = CASES[name]
    recorded_versions, first, total, squares, digest = GOLDEN[name]
    now = {k: noise.versions()[k] for k in keys}
    if now != recorded_versions:
        pytest.fail(f"{name}: versions {now} differ from the recorded {recorded_versions}; re-record this case")
    got_first, got_total, got_squares, got_digest = fingerprint(make())
    bump = " or ".join(keys)
    assert got_first == first and abs(got_total - total) < 1e-6 and abs(got_squares - squares) < 1e-6, (
        f"{name}: the noise changed (first {got_first} vs {first}, sum {got_total} vs {total}); "
        f"bump the version of {bump} in latent_ops.noise and re-record, or fix the regression"
    )
    assert got_digest == digest, (
        f"{name}: same first values and sums but different bytes; bump the version of {bump} "
        "and re-record, or fix the regression"
    )


def test_versions_are_the_recorded_ones() -> None:
    # Every version a case depends on; a bump without re-recording the cases fails above.
    assert noise.NOISE_VERSIONS == {"comfy": 1, "a1111": 1, "a1111_nv": 1, "diffusers": 1}
    assert noise_types.TYPE_VERSIONS == dict.fromkeys(
        ["gaussian", "uniform", "perlin", "pyramid", "pink", "brown", "blue", "violet", "coloured", "offset"], 1
    )
    v = noise.versions()
    assert (v["variation"], v["step_noise"], v["brownian"], v["philox"]) == (1, 2, 1, 1)


if __name__ == "__main__":  # print the GOLDEN table for the current code
    for name in sorted(CASES):
        make, keys = CASES[name]
        versions = {k: noise.versions()[k] for k in keys}
        first, total, squares, digest = fingerprint(make())
        print(f"    {name!r}: ({versions!r}, {first!r}, {total!r}, {squares!r}, {digest!r}),")
