"""Video To Video's noise prior was scaled for one first sigma: refuse a sampler that starts at another.

MicroCinema Video To Video adds gamma * c(s) * z_c to the clip's latent, where s is the first sigma of the stock
KSampler it expects (steps, denoise, sampler_name and scheduler are widgets on that node, because a node cannot see
the sampler's settings). If the sampler is then set differently, the prior is silently off by s'/s. The node marks
its conditioning with the s it used (a plain key of the cond's options: ComfyUI's convert_cond copies every key into
the guider's conds, and nothing reads it but this check), and a SAMPLER_SAMPLE wrapper on our MODEL, which sees the
real sigmas, compares before the first step.
"""
from __future__ import annotations

import math

import comfy.patcher_extension

PRIOR_SIGMA_KEY = "microcinema_prior_sigma"
WRAPPER_KEY = "MicroCinema_prior_sigma_check"
REL_TOL = 1e-4  # the sigmas are recomputed in float32 by the same code: equal but for rounding
NODE = "MicroCinema Video To Video"


def mark(conditioning: list, sigma: float) -> list:
    """A copy of ``conditioning`` whose entries carry the first sigma the noise prior was scaled for."""
    return [[tensor, {**options, PRIOR_SIGMA_KEY: float(sigma)}] for tensor, options in conditioning]


def expected_sigma(conds: dict) -> float | None:
    for entries in (conds or {}).values():
        for entry in entries or []:
            if isinstance(entry, dict) and entry.get(PRIOR_SIGMA_KEY) is not None:
                return float(entry[PRIOR_SIGMA_KEY])
    return None


def mismatch(expected: float, actual: float) -> str | None:
    if math.isclose(expected, actual, rel_tol=REL_TOL, abs_tol=1e-8):
        return None
    return (f"{NODE}: the sampler starts at noise level {actual:.6g}, but the node scaled the noise prior for "
            f"{expected:.6g}; set inputs 'steps', 'denoise', 'sampler_name' and 'scheduler' exactly as on the "
            "sampler (or set 'noise_prior_gamma' to 0 and use MicroCinema Noise Prior with SamplerCustomAdvanced)")


def _sampler_sample(executor, guider, sigmas, *args, **kwargs):
    expected = expected_sigma(getattr(guider, "conds", None))
    if expected is not None and sigmas is not None and len(sigmas) > 0:
        problem = mismatch(expected, float(sigmas[0]))
        if problem:
            raise ValueError(problem)
    return executor(guider, sigmas, *args, **kwargs)


def install(model_patcher) -> None:
    model_patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY,
                                       _sampler_sample)
