"""The outbox policy (efactura/submission.py): what follows each attempt state."""

from __future__ import annotations

import pytest

from invoicesync_dagster.efactura.submission import Attempt, AttemptState, NextStep, decide

S = AttemptState


def test_a_document_never_sent_is_sent_as_attempt_one() -> None:
    decision = decide([], "abc")
    assert (decision.step, decision.next_attempt) == (NextStep.SEND, 1)


@pytest.mark.parametrize(
    ("states", "step"),
    [
        ([S.FAILED], NextStep.SEND),
        ([S.SENDING], NextStep.RECONCILE),  # the process died after recording the attempt
        ([S.UNKNOWN], NextStep.RECONCILE),  # the answer to the upload was lost
        ([S.SENT], NextStep.WAIT),
        ([S.ACCEPTED], NextStep.DONE),
        ([S.REJECTED, S.ACCEPTED], NextStep.DONE),
        ([S.FAILED, S.FAILED, S.SENT], NextStep.WAIT),
    ],
)
def test_the_last_attempt_decides(states: list[AttemptState], step: NextStep) -> None:
    attempts = [Attempt(n, state, "abc") for n, state in enumerate(states, 1)]
    decision = decide(attempts, "abc")
    assert decision.step is step
    assert decision.next_attempt == len(states) + 1


def test_an_accepted_document_is_never_sent_again_whatever_follows() -> None:
    # Even a later attempt recorded by mistake cannot reopen an accepted document.
    attempts = [Attempt(1, S.ACCEPTED, "abc"), Attempt(2, S.FAILED, "def")]
    assert decide(attempts, "xyz").step is NextStep.DONE


def test_a_rejected_document_is_resent_only_once_it_changed() -> None:
    attempts = [Attempt(1, S.REJECTED, "abc")]
    unchanged = decide(attempts, "abc")
    assert unchanged.step is NextStep.FIX and "fix" in unchanged.reason
    changed = decide(attempts, "def")
    assert (changed.step, changed.next_attempt) == (NextStep.SEND, 2)
