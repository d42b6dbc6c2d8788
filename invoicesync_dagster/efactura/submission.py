"""The outbox policy: what to do next with a document, given its filing attempts (ARCHITECTURE.md
§4.2). Pure: the attempts come from `efactura_submissions`, the decision goes back to the caller.

An ANAF upload is not idempotent, so every attempt is recorded *before* it is sent (`sending`)
and its answer after. Reading the last attempt of a document with one provider:

* none, or `failed` (the provider refused it before accepting anything: a 400, the firewall page,
  an expired token) → `send` a new attempt;
* `sending` or `unknown` (the process died, or the connection broke after the XML went out):
  nobody knows whether the provider has it → `reconcile` first, from the provider's own list of
  what it received; never send blind;
* `sent` (the provider gave an index, it is still processing) → `wait` for its status;
* `accepted` → `done`, forever, whatever is re-run;
* `rejected` (ANAF's `nok`) → `send` again only when the document changed since (its XML hash
  differs: the error was fixed), as a new attempt with the same number; else `fix` it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class AttemptState(StrEnum):
    SENDING = "sending"  # recorded, being sent: outcome unknown until answered
    UNKNOWN = "unknown"  # sent, but the answer was lost (timeout, dropped connection)
    SENT = "sent"  # the provider gave an index; processing
    ACCEPTED = "accepted"  # ANAF ok / SmartBill created
    REJECTED = "rejected"  # ANAF nok: errors in the attempt
    FAILED = "failed"  # refused before acceptance: nothing reached the provider's books


class NextStep(StrEnum):
    SEND = "send"
    RECONCILE = "reconcile"
    WAIT = "wait"
    DONE = "done"
    FIX = "fix"


@dataclass(frozen=True)
class Attempt:
    attempt: int
    state: AttemptState
    xml_sha256: str | None


@dataclass(frozen=True)
class Decision:
    step: NextStep
    reason: str
    next_attempt: int  # the attempt number a send would use


def decide(attempts: Sequence[Attempt], xml_sha256: str | None) -> Decision:
    """The next step for a document whose current XML hashes to `xml_sha256`."""
    if not attempts:
        return Decision(NextStep.SEND, "never sent", 1)
    ordered = sorted(attempts, key=lambda a: a.attempt)
    last = ordered[-1]
    following = last.attempt + 1
    if any(a.state is AttemptState.ACCEPTED for a in ordered):
        return Decision(NextStep.DONE, "accepted: never sent again", following)
    match last.state:
        case AttemptState.FAILED:
            return Decision(NextStep.SEND, f"attempt {last.attempt} was refused", following)
        case AttemptState.SENDING | AttemptState.UNKNOWN:
            return Decision(
                NextStep.RECONCILE,
                f"attempt {last.attempt} may have reached the provider: look it up before "
                "sending anything",
                following,
            )
        case AttemptState.SENT:
            return Decision(NextStep.WAIT, f"attempt {last.attempt} is being processed", following)
        case AttemptState.REJECTED if xml_sha256 is not None and xml_sha256 != last.xml_sha256:
            return Decision(
                NextStep.SEND, f"attempt {last.attempt} was rejected and the document changed",
                following,
            )  # fmt: skip
        case AttemptState.REJECTED:
            return Decision(
                NextStep.FIX,
                f"attempt {last.attempt} was rejected; the document has not changed since: fix "
                "what the errors name, rebuild the day, and it is sent again",
                following,
            )
    raise ValueError(f"unknown attempt state {last.state!r}")
