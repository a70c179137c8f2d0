"""Probabilities people are shown. Temperature scaling (Guo et al., 2017): one scalar T that divides the
logits, fitted on the validation split by negative log-likelihood; predicted classes stay the same (argmax
is unchanged by T > 0). And the mean of several probability vectors (of shifted views, or of an ensemble's
models), as logits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

TEMPERATURE_KEY = "temperature"  # where a checkpoint keeps it
LOWEST, HIGHEST = 0.05, 20.0  # beyond these a model's logits carry nothing a temperature could fix


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising mean NLL of softmax(logits / T), found over log T (so T stays positive) by L-BFGS in
    float64, where a few dozen iterations converge for one parameter."""
    # Called from Lightning's validation loop, which runs in inference mode: copies made outside it can
    # take part in autograd.
    with torch.inference_mode(False), torch.enable_grad():
        logits = logits.detach().to("cpu", torch.float64, copy=True)
        labels = labels.detach().to("cpu", copy=True)
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        return float(log_t.detach().exp().clamp(LOWEST, HIGHEST))


def positive_number(value: object, what: str) -> float:
    """`value` as a finite float above 0: a temperature or a standard deviation read from a file, where 0,
    a negative number or NaN would give NaN or reversed rankings."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} is {value!r}; it must be a finite number above 0")
    return number


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels))


def mean_of_probabilities(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """log(mean(softmax(l) for l in logits)): logits whose softmax is the mean, computed in log space so tiny
    probabilities stay finite."""
    log_probabilities = torch.stack([each.float().log_softmax(dim=1) for each in logits])
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(logits))
