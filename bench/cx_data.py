#!/usr/bin/env python3
"""Writes the data Step 10's benchmarks (BENCHMARKS.md) run on, into the directory given:
contacts_1m.csv (1 000 000 contacts of 200 000 customers, opened uniformly over 2022-2024 to
the second, first response lognormal(6, 1.5) seconds after opening, resolution lognormal(9, 1.5)
seconds after that, 1 % still open) and survey_100k.csv (100 000 answers with nine 1-5 ratings
sharing a halo, the score driven by the first two); and for cx_outcomes purchases_1m.csv (about
a million purchases of 200 000 customers acquired over 2022-2024, BG/NBD-shaped, timestamps to
the second) with answers_100k.csv (100 000 NPS answers of those customers, each after the
customer's first purchase). Seeded; standard library only.

    python3 bench/cx_data.py /tmp/bench
"""
import csv
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    start = datetime(2022, 1, 1)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(out / "contacts_1m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["contact_id", "customer_id", "channel", "opened_at", "first_response_at", "resolved_at"])
        for i in range(1_000_000):
            opened = start + timedelta(seconds=rng.randrange(3 * 365 * 86400))
            response = opened + timedelta(seconds=int(rng.lognormvariate(6, 1.5)))
            resolved = response + timedelta(seconds=int(rng.lognormvariate(9, 1.5)))
            w.writerow([f"k{i}", f"c{rng.randrange(200000)}", rng.choice(["chat", "email", "phone"]),
                        stamp(opened), stamp(response), stamp(resolved) if rng.random() < 0.99 else ""])
    with open(out / "survey_100k.csv", "w", newline="") as f:
        w = csv.writer(f)
        names = [f"r{k}" for k in range(9)]
        w.writerow(["timestamp", "score"] + names)
        for _ in range(100_000):
            halo = rng.gauss(0, 0.6)
            ratings = [min(5, max(1, round(3.5 + halo + rng.gauss(0, 0.8)))) for _ in names]
            score = min(10, max(0, round(7 + 0.5 * (ratings[0] - 3.5) + 0.3 * (ratings[1] - 3.5) + rng.gauss(0, 1.3))))
            w.writerow([(start + timedelta(days=rng.randrange(1000))).date().isoformat(), score] + ratings)





def outcomes(out: Path) -> None:
    """purchases_1m.csv and answers_100k.csv (see the module's text)."""
    rng = random.Random(11)
    start = datetime(2022, 1, 1)
    span = 3 * 365 * 86400
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    first = []
    with open(out / "purchases_1m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "timestamp", "amount"])
        for c in range(200_000):
            t = rng.randrange(span)
            first.append(t)
            rate = rng.gammavariate(0.6, 1.0) / (30 * 86400)
            p = rng.betavariate(0.8, 4.0)
            mean = rng.uniform(15, 120)
            while t < span:
                w.writerow([f"c{c}", stamp(start + timedelta(seconds=t)), round(mean * rng.uniform(0.5, 1.5), 2)])
                if rng.random() < p:
                    break
                t += int(rng.expovariate(rate)) + 1
    with open(out / "answers_100k.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "timestamp", "score"])
        for _ in range(100_000):
            c = rng.randrange(200_000)
            t = rng.randrange(first[c], span)
            w.writerow([f"c{c}", stamp(start + timedelta(seconds=t)), min(10, max(0, round(rng.gauss(7.5, 2.2))))])


if __name__ == "__main__":
    main()
    outcomes(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
