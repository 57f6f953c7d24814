"""One sandwich-rule training step: the largest subnet on labels, the others distilled from it.

All losses of a step are summed and back-propagated once, so DistributedDataParallel sees one
backward per step and averages the summed gradient over workers (parameters no subnet used in
the step get zero gradients, which ``find_unused_parameters=True`` handles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.subnet import SubnetConfig


@dataclass(frozen=True)
class StepLosses:
    """Mean losses of one step (over micro-batches), for logging."""

    largest: float
    students: float
    correct_largest: int
    n: int


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Cross-entropy against the teacher's softened probabilities, scaled by ``T²`` (Hinton)."""
    soft = F.softmax(teacher.detach() / temperature, dim=1)
    return F.cross_entropy(student / temperature, soft) * temperature**2


def sandwich_backward(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    largest: SubnetConfig,
    students: Sequence[SubnetConfig],
    *,
    distill: bool = True,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    micro_batches: int = 1,
) -> StepLosses:
    """Accumulate the gradients of one step into ``.grad`` (the caller zeroes and steps).

    With ``students`` empty this is a plain training step of the largest network.
    """
    largest_sum = student_sum = 0.0
    correct = 0
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches), strict=True):
        teacher = model(xs, largest)
        loss = F.cross_entropy(teacher, ys, label_smoothing=label_smoothing)
        largest_sum += float(loss.detach())
        correct += int((teacher.detach().argmax(1) == ys).sum())
        student_loss = torch.zeros((), device=x.device)
        for config in students:
            logits = model(xs, config)
            if distill:
                student_loss = student_loss + distillation_loss(logits, teacher, temperature)
            else:
                student_loss = student_loss + F.cross_entropy(
                    logits, ys, label_smoothing=label_smoothing
                )
        student_sum += float(student_loss.detach()) / max(1, len(students))
        ((loss + student_loss) / micro_batches).backward()
    return StepLosses(
        largest=largest_sum / micro_batches,
        students=student_sum / micro_batches,
        correct_largest=correct,
        n=int(y.shape[0]),
    )
