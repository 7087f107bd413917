#!/usr/bin/env python3
"""Writes the example datasets in examples/data/: small, realistic, synthetic, reproducible.

Run from the repository root: python3 examples/generate.py
Standard library only; seeded, so the files only change when this script does.
"""
import csv
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def nps_survey(rng: random.Random) -> None:
    """300 answers to "how likely are you to recommend us?" (0-10), by region and channel.

    Each region has its own mix of promoters, passives and detractors, so NPS differs by
    segment the way it does in real surveys.
    """
    mix = {  # region: (share of promoters, share of passives); the rest are detractors
        "north": (0.55, 0.30),
        "south": (0.35, 0.30),
        "east": (0.45, 0.35),
        "west": (0.25, 0.35),
    }
    rows = []
    for respondent in range(1, 301):
        region = rng.choice(sorted(mix))
        channel = rng.choices(["web", "store", "phone"], weights=[5, 3, 2])[0]
        promoters, passives = mix[region]
        u = rng.random()
        if u < promoters:
            score = rng.choice([9, 10])
        elif u < promoters + passives:
            score = rng.choice([7, 8])
        else:
            score = rng.choices(range(0, 7), weights=[1, 1, 1, 2, 2, 3, 4])[0]
        rows.append((f"r{respondent:04d}", region, channel, score))
    with open(DATA / "nps.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["respondent", "region", "channel", "score"])
        writer.writerows(rows)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    nps_survey(random.Random(20261122))


if __name__ == "__main__":
    main()
