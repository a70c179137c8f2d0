"""Splitting an image of separated characters (a short word) into one image per character.

Characters are the runs of columns that hold ink, left to right. Columns rather than connected components
keep the dot of an i or j with its stem (they share columns) and a broken stroke in one piece; a small
run that stands apart (a dot written beside its stem) joins its nearer neighbour, and specks are dropped.
"""

from __future__ import annotations

from itertools import pairwise

import torch

# Columns whose ink is fainter than this share of the brightest ink count as gaps (faint smudges, the
# blurred edges of neighbours).
INK_LEVEL = 0.2
# A run of columns with less ink than this share of the median run's is a dot (or a detached stroke)
# that belongs to a neighbour; with less than NOISE_SHARE it is a speck of dirt and is dropped.
MIN_INK_SHARE = 0.2
NOISE_SHARE = 0.02


def column_runs(inked: torch.Tensor) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D mask."""
    edges = torch.diff(inked.int(), prepend=torch.zeros(1, dtype=torch.int), append=torch.zeros(1, dtype=torch.int))
    starts, stops = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def split_characters(ink: torch.Tensor) -> list[torch.Tensor]:
    """Ink on black (H, W) -> one (H, w) slice per character, left to right, cut mid-gap."""
    runs = column_runs((ink > INK_LEVEL * ink.max()).any(dim=0))
    if not runs:
        return []
    masses = [float(ink[:, start:stop].sum()) for start, stop in runs]
    typical = sorted(masses)[len(runs) // 2]
    specks = [run for run, mass in zip(runs, masses, strict=True) if mass < NOISE_SHARE * typical]
    if specks:
        ink = ink.clone()
        for start, stop in specks:
            ink[:, start:stop] = 0
        runs = [run for run in runs if run not in specks]
    while len(runs) > 1:
        masses = [float(ink[:, start:stop].sum()) for start, stop in runs]
        smallest = min(range(len(runs)), key=masses.__getitem__)
        if masses[smallest] >= MIN_INK_SHARE * typical:
            break
        runs = merge_into_nearer_neighbour(runs, smallest)
    # Cut in the middle of each gap, so that a character keeps the faint edges of its strokes.
    cuts = [0, *((stop + start) // 2 for (_, stop), (start, _) in pairwise(runs)), ink.shape[1]]
    return [ink[:, left:right] for left, right in pairwise(cuts)]


def merge_into_nearer_neighbour(runs: list[tuple[int, int]], index: int) -> list[tuple[int, int]]:
    start, stop = runs[index]
    gap_left = start - runs[index - 1][1] if index > 0 else None
    gap_right = runs[index + 1][0] - stop if index + 1 < len(runs) else None
    neighbour = index - 1 if gap_right is None or (gap_left is not None and gap_left <= gap_right) else index + 1
    first, last = sorted((index, neighbour))
    return [*runs[:first], (runs[first][0], runs[last][1]), *runs[last + 1 :]]
