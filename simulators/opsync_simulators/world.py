"""The seeded portfolio both simulators share: people and which containers form a product.

People are the same humans in Jira and GitHub, matched by email, so the hub can merge them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = [
    "Ada",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Alan",
    "Radia",
    "Edsger",
    "Katherine",
    "Guido",
    "Hedy",
    "Donald",
    "Sophie",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Turing",
    "Perlman",
    "Dijkstra",
    "Johnson",
    "Rossum",
    "Lamarr",
    "Knuth",
    "Wilson",
]


@dataclass(frozen=True)
class SimPerson:
    display_name: str
    email: str
    account_id: str  # Jira Cloud accountId
    login: str  # GitHub login
    github_id: int


@dataclass(frozen=True)
class SimProduct:
    key: str
    name: str
    jira_project: str
    github_repos: tuple[str, ...]


PRODUCTS = (
    SimProduct("payments", "Payments", "PAY", ("acme/payments", "acme/ledger")),
    SimProduct("checkout", "Checkout", "CHK", ("acme/checkout",)),
    SimProduct("growth", "Growth", "GRO", ("acme/growth-web",)),
)


def people(seed: int = 7, count: int = 16) -> list[SimPerson]:
    rng = random.Random(seed)
    result = []
    for n in range(count):
        first, last = FIRST[n % len(FIRST)], LAST[(n * 7) % len(LAST)]
        account = "5b10ac8d82e05b22cc7d" + "".join(rng.choice("0123456789abcdef") for _ in range(4))
        result.append(
            SimPerson(
                display_name=f"{first} {last}",
                email=f"{first}.{last}@acme.example".lower(),
                account_id=f"{account}{n:02d}",
                login=f"{first}{last[0]}".lower() + ("" if n < len(FIRST) else str(n)),
                github_id=1000 + n,
            )
        )
    return result
