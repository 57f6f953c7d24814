"""One sandwich-rule training step: the largest subnet on labels, the others distilled from it.

All subnets of a step run inside one forward of :class:`SandwichObjective` and their losses are
summed and back-propagated once, so DistributedDataParallel sees one forward and one backward
per step and averages the summed gradient over workers (parameters no subnet used in the step
get zero gradients, which ``find_unused_parameters=True`` handles).
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


class SandwichObjective(nn.Module):
    """The summed loss of one sandwich step, computed in a single ``forward``.

    DistributedDataParallel expects one forward per backward; running every subnet of the step
    inside one forward call is what lets DDP wrap the sandwich rule.
    """

    def __init__(self, supernet: nn.Module) -> None:
        super().__init__()
        self.supernet = supernet

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        largest: SubnetConfig,
        students: Sequence[SubnetConfig],
        *,
        distill: bool = True,
        temperature: float = 1.0,
        distill_weight: float = 1.0,
        label_smoothing: float = 0.0,
        students_smoothing: float | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(total loss, largest loss, mean student loss, correct largest predictions)``.

        ``students_smoothing`` is the students' label smoothing (``None``: ``label_smoothing``).
        """
        student_smoothing = label_smoothing if students_smoothing is None else students_smoothing
        teacher = self.supernet(x, largest)
        loss = F.cross_entropy(teacher, y, label_smoothing=label_smoothing)
        student_loss = torch.zeros((), device=x.device)
        for config in students:
            logits = self.supernet(x, config)
            weight = distill_weight if distill else 0.0
            if weight > 0:
                kd = distillation_loss(logits, teacher, temperature)
                student_loss = student_loss + weight * kd
            if weight < 1:
                ce = F.cross_entropy(logits, y, label_smoothing=student_smoothing)
                student_loss = student_loss + (1 - weight) * ce
        correct = (teacher.detach().argmax(1) == y).sum()
        mean_student = student_loss.detach() / max(1, len(students))
        return loss + student_loss, loss.detach(), mean_student, correct


def sandwich_backward(
    objective: nn.Module,
    x: Tensor,
    y: Tensor,
    largest: SubnetConfig,
    students: Sequence[SubnetConfig],
    *,
    distill: bool = True,
    temperature: float = 1.0,
    distill_weight: float = 1.0,
    label_smoothing: float = 0.0,
    students_smoothing: float | None = None,
    micro_batches: int = 1,
) -> StepLosses:
    """Accumulate the gradients of one step into ``.grad`` (the caller zeroes and steps).

    ``objective`` is a :class:`SandwichObjective` (possibly DDP-wrapped). With ``students``
    empty this is a plain training step of the largest network.
    """
    largest_sum = student_sum = 0.0
    correct = 0
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches), strict=True):
        total, largest_loss, student_loss, n_correct = objective(
            xs,
            ys,
            largest,
            students,
            distill=distill,
            temperature=temperature,
            distill_weight=distill_weight,
            label_smoothing=label_smoothing,
            students_smoothing=students_smoothing,
        )
        (total / micro_batches).backward()
        largest_sum += float(largest_loss)
        student_sum += float(student_loss)
        correct += int(n_correct)
    return StepLosses(
        largest=largest_sum / micro_batches,
        students=student_sum / micro_batches,
        correct_largest=correct,
        n=int(y.shape[0]),
    )
