#!/usr/bin/env python3
"""Writes the example datasets in examples/data/: small, realistic, synthetic, reproducible.

Run from the repository root: python3 examples/generate.py
Standard library only; seeded, so the files only change when this script does.
"""
import csv
import random
from datetime import date, datetime, timedelta
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def nps_survey(rng: random.Random) -> None:
    """300 answers to "how likely are you to recommend us?" (0-10) in 2024, by region and channel.

    Each region has its own mix of promoters, passives and detractors, so NPS differs by
    segment the way it does in real surveys. The answer dates come from a generator of their
    own, so adding them left the scores as they were.
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
    rows = with_answer_dates(rows, random.Random(20261128))
    with open(DATA / "nps.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["respondent", "region", "channel", "score", "timestamp"])
        writer.writerows(rows)


def with_answer_dates(rows: list, rng: random.Random) -> list:
    """Each row with a day of 2024 it was answered on, as a last column."""
    return [row + (date(2024, 1, 1) + timedelta(days=rng.randrange(366)),) for row in rows]


def day(start: date, offset: float) -> date:
    return start + timedelta(days=int(offset))


def customers_and_transactions(rng: random.Random) -> None:
    """A subscription-style customer base, 2022-2024.

    retention.csv: one row per customer (start, end, revenue, plan). Each month a customer
    leaves with a plan-dependent probability, so pro customers stay longer.
    transactions.csv: the purchases of the same customers (amount, margin, channel), with
    order sizes and purchase rates that vary by customer.
    """
    monthly_churn = {"basic": 0.05, "pro": 0.02}
    first, last = date(2022, 1, 1), date(2024, 12, 31)
    customers, transactions = [], []
    for i in range(1, 401):
        plan = rng.choices(["basic", "pro"], weights=[7, 3])[0]
        start = day(first, rng.uniform(0, (last - first).days))
        end = None
        months = 0
        while True:
            months += 1
            moment = day(start, months * 30.44)
            if moment > last:
                break
            if rng.random() < monthly_churn[plan]:
                end = moment
                break
        customer = f"c{i:04d}"
        rate = rng.uniform(0.5, 3.0) * (1.5 if plan == "pro" else 1.0)  # purchases a month
        mean_order = rng.lognormvariate(3.6, 0.5)
        margin = round(rng.uniform(0.2, 0.45), 2)
        channel = rng.choices(["web", "store", "phone"], weights=[5, 3, 2])[0]
        revenue = 0.0
        t = start
        stop = end or last
        while True:
            t = day(t, rng.expovariate(rate / 30.44) + 1)
            if t >= stop:
                break
            amount = round(rng.lognormvariate(0, 0.4) * mean_order, 2)
            revenue += amount
            transactions.append((customer, t.isoformat(), amount, margin, channel))
        customers.append((customer, start.isoformat(), end.isoformat() if end else "", round(revenue, 2), plan))
    with open(DATA / "retention.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "start", "end", "revenue", "plan"])
        writer.writerows(customers)
    transactions.sort(key=lambda row: (row[1], row[0]))
    with open(DATA / "transactions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "timestamp", "amount", "margin", "channel"])
        writer.writerows(transactions)
    finnish_export(transactions)
    parquet_copy(transactions)


def finnish_export(transactions: list) -> None:
    """transactions_fi.csv: the same purchases as a spreadsheet in a Finnish locale exports
    them: semicolons, decimal commas, day.month.year dates and the columns' Finnish names."""
    with open(DATA / "transactions_fi.csv", "w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f, delimiter=";", lineterminator="\r\n")
        writer.writerow(["asiakasnro", "pvm", "summa", "kate", "kanava"])
        for customer, when, amount, margin, channel in transactions:
            d = date.fromisoformat(when)
            writer.writerow(
                [customer, f"{d.day}.{d.month}.{d.year}", f"{amount:.2f}".replace(".", ","), str(margin).replace(".", ","), channel]
            )


def parquet_copy(transactions: list) -> None:
    """transactions.parquet: the same purchases as a data lake holds them (dates as dates,
    amounts as decimals). Written only where pyarrow is installed; the file is checked in."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        print("pyarrow is not installed: transactions.parquet left as it is")
        return
    from decimal import Decimal

    columns = list(zip(*transactions))
    table = pa.table(
        {
            "customer_id": pa.array(columns[0]),
            "timestamp": pa.array([date.fromisoformat(d) for d in columns[1]], pa.date32()),
            "amount": pa.array([Decimal(f"{a:.2f}") for a in columns[2]], pa.decimal128(12, 2)),
            "margin": pa.array(columns[3], pa.float64()),
            "channel": pa.array(columns[4]).dictionary_encode(),
        }
    )
    pq.write_table(table, DATA / "transactions.parquet", compression="zstd", row_group_size=4096)


def order_lines(rng: random.Random) -> None:
    """order_lines.csv: 1000 B2B order lines against a price list; sales reps discount more in
    some regions and for large quantities, and a few lines sell above list."""
    price_list = {"widget": 120.0, "gadget": 80.0, "gizmo": 45.0, "sprocket": 15.0, "doohickey": 250.0}
    depth = {"north": 0.04, "south": 0.10, "east": 0.07, "west": 0.02}
    rows = []
    for line in range(1, 1001):
        product = rng.choice(sorted(price_list))
        region = rng.choice(sorted(depth))
        quantity = rng.choice([1, 1, 2, 5, 10, 20, 50])
        target = price_list[product]
        u = rng.random()
        if u < 0.1:
            realized = target * (1 + rng.uniform(0.01, 0.08))  # rush orders, small premium
        elif u < 0.5:
            realized = target
        else:
            realized = target * (1 - min(0.4, rng.expovariate(1 / depth[region]) + 0.002 * quantity))
        timestamp = day(date(2024, 1, 1), rng.uniform(0, 365)).isoformat()
        rows.append((f"L{line:05d}", f"k{rng.randint(1, 60):03d}", product, region, timestamp, quantity, target, round(realized, 2)))
    with open(DATA / "order_lines.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["line_id", "customer_id", "product", "region", "timestamp", "quantity", "target_price", "realized_price"])
        writer.writerows(rows)


def csat_survey(rng: random.Random) -> None:
    """csat.csv: 400 post-contact satisfaction answers on 1-5 in 2024, by support channel."""
    weights = {"chat": [2, 3, 10, 35, 50], "email": [6, 9, 20, 35, 30], "phone": [4, 6, 15, 40, 35]}
    rows = []
    for ticket in range(1, 401):
        channel = rng.choice(sorted(weights))
        rows.append((f"t{ticket:04d}", channel, rng.choices([1, 2, 3, 4, 5], weights=weights[channel])[0]))
    rows = with_answer_dates(rows, random.Random(20261129))
    with open(DATA / "csat.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ticket_id", "channel", "score", "timestamp"])
        writer.writerows(rows)


def cx_customers(rng: random.Random) -> None:
    """cx.csv: 600 customers with their NPS answer, revenue in the year and whether they renewed.
    Better experiences go with higher spend and renewal, as the published studies report."""
    rows = []
    for i in range(1, 601):
        score = rng.choices(range(11), weights=[2, 1, 2, 3, 4, 6, 8, 12, 16, 20, 16])[0]
        tier = 0 if score <= 6 else (2 if score >= 9 else 1)
        revenue = round(rng.lognormvariate(6.0 + 0.45 * tier, 0.6), 2)
        renewed = rng.random() < [0.45, 0.62, 0.76][tier]
        segment = rng.choice(["smb", "mid", "enterprise"])
        rows.append((f"c{i:04d}", segment, score, revenue, "true" if renewed else "false"))
    with open(DATA / "cx.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "segment", "score", "revenue", "retained"])
        writer.writerows(rows)


def subscription_cohorts(rng: random.Random) -> None:
    """cohorts.csv: yearly subscriber cohorts 2018-2022, observed to 2024, each customer with a
    personal churn probability drawn from Beta(0.9, 2.2): the shifted-beta-geometric model's
    own assumptions, so retention_forecast can recover them."""
    rows = []
    for year in range(2018, 2023):
        size = rng.randint(800, 1500)
        last = 2024 - year
        active = [0] * (last + 1)
        for _ in range(size):
            theta = rng.betavariate(0.9, 2.2)
            period = 0
            while period <= last:
                active[period] += 1
                if rng.random() < theta:
                    break
                period += 1
        rows += [(year, period, count) for period, count in enumerate(active)]
    with open(DATA / "cohorts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cohort", "period", "active"])
        writer.writerows(rows)


def published_cohorts() -> None:
    """cohort_segments.csv: Fader & Hardie's (2007, "How to project customer retention",
    Table 1) regular and high-end customers, 1000 each, over their first seven years: two
    cohorts told apart by a segment column, for retention_forecast's covariates."""
    published = {
        ("regular-2000", "regular"): [1000, 631, 468, 382, 326, 289, 262, 241],
        ("high-end-2000", "high_end"): [1000, 869, 743, 653, 593, 551, 517, 491],
    }
    with open(DATA / "cohort_segments.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["cohort", "segment", "period", "active"])
        for (cohort, segment), counts in published.items():
            for period, active in enumerate(counts):
                writer.writerow([cohort, segment, period, active])


def contact_log(rng: random.Random) -> None:
    """contacts.csv: a year of customer-service contacts of transactions.csv's customers.

    Customers write, chat or call about a matter (billing, delivery, returns, account); chats
    and calls are answered in minutes, emails within business hours (08:00-18:00 Helsinki,
    weekdays); a contact that is not resolved for good brings the customer back on the same
    matter within days (phone resolves best, email worst). Times are UTC, to the second; the
    log was exported on 2024-12-31 at 16:00 UTC, so the last contacts are still open.
    """
    helsinki = 2  # hours ahead of UTC in winter; summer time is ignored by this generator
    export = datetime(2024, 12, 31, 16, 0, 0)
    fixed = {"phone": 0.78, "chat": 0.70, "email": 0.58}  # P(resolved for good at this contact)
    matters = ["billing", "delivery", "returns", "account"]
    rows = []

    def business_delay(opened: datetime, hours: float) -> datetime:
        """`hours` of working time (08-18 local, Mon-Fri) after `opened`."""
        t = opened
        left = hours * 3600.0
        while left > 0:
            local = t + timedelta(hours=helsinki)
            open_at = local.replace(hour=8, minute=0, second=0)
            close_at = local.replace(hour=18, minute=0, second=0)
            if local.weekday() >= 5 or local >= close_at:
                t = (open_at + timedelta(days=1)) - timedelta(hours=helsinki)
                continue
            if local < open_at:
                t = open_at - timedelta(hours=helsinki)
                continue
            step = min(left, (close_at - local).total_seconds())
            t += timedelta(seconds=step)
            left -= step
        return t

    def contact(customer: str, matter: str, opened: datetime, depth: int) -> None:
        channel = rng.choices(["chat", "email", "phone"], weights=[5, 3, 2])[0]
        if channel == "email":
            response = business_delay(opened, rng.lognormvariate(1.2, 0.9))
        else:
            response = opened + timedelta(seconds=int(rng.lognormvariate(4.8, 0.8)))
        if rng.random() < 0.6 and channel != "email":
            resolved = response + timedelta(seconds=int(rng.lognormvariate(6.0, 0.6)))
        else:
            resolved = business_delay(response, rng.lognormvariate(2.0, 1.1))
        good = rng.random() < fixed[channel]
        rows.append([customer, channel, matter, opened, response, resolved])
        if not good and depth < 3:
            back = resolved + timedelta(seconds=int(rng.uniform(0.2, 6.0) * 86400))
            contact(customer, matter, back, depth + 1)

    start = datetime(2024, 1, 1)
    for _ in range(1100):
        customer = f"c{rng.randint(1, 400):04d}"
        day_offset = rng.uniform(0, 365)
        local_hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 13, 12, 13, 13, 12, 11, 10, 9, 8, 6, 4, 2, 1])[0]
        opened = start + timedelta(days=int(day_offset), hours=local_hour - helsinki, seconds=rng.randrange(3600))
        contact(customer, rng.choice(matters), opened, 0)
    rows = [r for r in rows if r[3] <= export]
    rows.sort(key=lambda r: r[3])
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(DATA / "contacts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["contact_id", "customer_id", "channel", "matter", "opened_at", "first_response_at", "resolved_at"])
        for number, (customer, channel, matter, opened, response, resolved) in enumerate(rows, 1):
            writer.writerow([
                f"k{number:05d}", customer, channel, matter, stamp(opened),
                stamp(response) if response <= export else "",
                stamp(resolved) if resolved <= export else "",
            ])


def survey_with_ratings(rng: random.Random) -> None:
    """survey.csv: 1 200 answers in 2024 from transactions.csv's customers: likelihood to
    recommend (0-10) and ratings (1-5) of the nine things customers say make service good.

    Ratings share a halo (a customer pleased overall rates everything higher); the score is
    driven by speed, reliability, personal service and friendliness, hardly by the rest.
    Email answers rate speed lower; the second half of the year is a little better.
    """
    drivers = {  # rating: (effect on the score, mean rating)
        "efficiency": (0.15, 3.6), "relevance": (0.05, 3.8), "trust": (0.2, 3.9),
        "ease_of_use": (0.15, 3.7), "friendliness": (0.35, 4.1), "speed": (0.6, 3.2),
        "reliability": (0.5, 3.5), "personal_service": (0.4, 3.0), "convenience": (0.1, 3.9),
    }
    rows = []
    for i in range(1, 1201):
        when = date(2024, 1, 1) + timedelta(days=rng.randrange(366))
        channel = rng.choices(["chat", "email", "phone"], weights=[5, 3, 2])[0]
        halo = rng.gauss(0, 0.6)
        ratings = {}
        latent = 7.4 + (0.4 if when.month > 6 else 0.0)
        for name, (effect, mean) in drivers.items():
            own = rng.gauss(0, 0.8) - (0.6 if name == "speed" and channel == "email" else 0.0)
            value = mean + halo + own
            ratings[name] = min(5, max(1, round(value)))
            latent += effect * (value - mean)
        score = min(10, max(0, round(latent + rng.gauss(0, 1.3))))
        customer = f"c{rng.randint(1, 400):04d}"
        rows.append([f"s{i:04d}", customer, when.isoformat(), channel, score] + [ratings[n] for n in drivers])
    rows.sort(key=lambda r: r[2])
    with open(DATA / "survey.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["respondent", "customer_id", "timestamp", "channel", "score"] + [f"rating_{n}" for n in drivers])
        writer.writerows(rows)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    nps_survey(random.Random(20261122))
    customers_and_transactions(random.Random(20261123))
    order_lines(random.Random(20261124))
    csat_survey(random.Random(20261125))
    cx_customers(random.Random(20261126))
    subscription_cohorts(random.Random(20261127))
    published_cohorts()
    contact_log(random.Random(20261207))
    survey_with_ratings(random.Random(20261208))


if __name__ == "__main__":
    main()
